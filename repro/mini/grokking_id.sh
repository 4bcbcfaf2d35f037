#!/usr/bin/env bash
# Result 4 (Power et al. 2022, Brown et al. 2022): a 2-layer transformer groks a÷b mod 97 while the activation ID of
# every block is measured (configs/exp/math_equations_id.yaml): 30 % and 50 % training equations with AdamW weight
# decay 1, and 50 % without weight decay, capped at 20,000 / 8,000 / 8,000 steps.
. "$(dirname "$0")/../lib.sh"
for seed in $(seeds 0,1,2); do
  train_once "frac0.3_wd1/seed$seed" +exp=math_equations_id data.train_frac=0.3 optim.optimizer.weight_decay=1.0 \
    trainer.max_steps=20000 "seed=$seed" &
  train_once "frac0.5_wd1/seed$seed" +exp=math_equations_id data.train_frac=0.5 optim.optimizer.weight_decay=1.0 \
    trainer.max_steps=8000 "seed=$seed" &
  train_once "frac0.5_wd0/seed$seed" +exp=math_equations_id data.train_frac=0.5 optim.optimizer.weight_decay=0.0 \
    trainer.max_steps=8000 "seed=$seed" &
done
finish
