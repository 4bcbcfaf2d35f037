#!/usr/bin/env bash
# Result 5 (Aghajanyan et al. 2021, offline analogue): pretrain the mod-97 transformer on a·b (50 % train, AdamW
# weight decay 1, configs/exp/math_equations.yaml) with snapshots, then a d-sweep of fine-tuning a÷b in a random
# subspace from each snapshot (configs/exp/finetune_mod97.yaml); snapshot 0 is the untrained init.
. "$(dirname "$0")/../lib.sh"
SNAPSHOTS=${SNAPSHOTS:-0 1000 2000 4000 8000}   # pretraining steps to fine-tune from; the last is the pretraining length
last=${SNAPSHOTS##* }
snapshot() { printf 'snapshots/step%06d.ckpt' "$1"; }
KEEP_IF=$(snapshot "$last") train_once pretrain_mul +exp=math_equations data.op=mul data.train_frac=0.5 callbacks=snapshots \
  "callbacks.snapshots.steps=[${SNAPSHOTS// /,}]" "trainer.max_steps=$last" trainer.check_val_every_n_epoch=10 seed=0
share $(echo $SNAPSHOTS | wc -w)  # one sweep per snapshot, side by side
for step in $SNAPSHOTS; do
  sweep "from_step$step" +exp=finetune_mod97 "pretrained=$HERE/pretrain_mul/$(snapshot "$step")" &
done
finish
