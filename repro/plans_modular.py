"""Grokking with activation ID (result 4) and fine-tuning ID against pretraining step (result 5): the plans."""
from __future__ import annotations

from repro.steps import Result, Settings, hydra_list, sweep_step, train_step

GROK_SEEDS = (0, 1, 2)
# (folder, train fraction, AdamW weight decay, steps). Power et al.'s recipe groks ÷ at 50 % by ~3k steps and at
# 30 % by ~16k steps with weight decay 1 (H100 timings in the reference notes); weight decay 0 does not within 24k.
GROK_SETTINGS = (("frac0.3_wd1", 0.3, 1.0, 20000), ("frac0.5_wd1", 0.5, 1.0, 8000), ("frac0.5_wd0", 0.5, 0.0, 8000))
GROK_EXTENDED = (("frac0.3_wd0", 0.3, 0.0, 20000),)
PRETRAIN_OP = "mul"
PRETRAIN_STEPS = 8000
# Snapshots of the a·b run to fine-tune from: the init, memorising (1k), just grokked (2k) and after (4k, 8k).
FINETUNE_FROM = (0, 1000, 2000, 4000, 8000)
FINETUNE_VALUES = (1000, 3000, 10000, 20000, 30000, 100000)
FINETUNE_SEEDS = (0, 1, 2)
FINETUNE_STEPS = 3000      # fine-tuning steps per run (the exp's trainer.max_steps)


def grokking_id(s: Settings, extended: bool = False) -> Result:
    """Result 4: +exp=math_equations_id per (train fraction, weight decay) and seed, each run in its own folder."""
    steps = []
    for name, frac, wd, max_steps in GROK_SETTINGS + (GROK_EXTENDED if extended else ()):
        for seed in s.pick_seeds(GROK_SEEDS):
            steps.append(train_step(s, f"grokking_id/{name}/seed{seed}", s.root / "grokking_id" / name / f"seed{seed}",
                                    ("+exp=math_equations_id", f"data.train_frac={frac}",
                                     f"optim.optimizer.weight_decay={wd}", f"trainer.max_steps={max_steps}",
                                     f"seed={seed}")))
    cells = [f"{n} ({m} steps)" for n, _, _, m in GROK_SETTINGS + (GROK_EXTENDED if extended else ())]
    return Result("grokking_id", "Brown et al. 2022 / Power et al. 2022: grokking ÷ mod 97 and last-layer ID",
                  (tuple(steps),), f"p=97 a÷b, 2-layer transformer, AdamW 1e-3, batch 512, seeds {list(GROK_SEEDS)}; "
                  f"{', '.join(cells)}; TwoNN of blocks.*.attn/mlp on the whole train and held-out sets every "
                  "500 steps")


def snapshot_steps(s: Settings) -> tuple[int, ...]:
    """Pretraining steps to fine-tune from (the smoke run takes 2 steps and snapshots 0 and 2)."""
    return (0, 2) if s.smoke else FINETUNE_FROM


def finetune_id(s: Settings) -> Result:
    """Result 5: pretrain a·b with snapshots, then a d-sweep on a÷b from each snapshot (step 0: the init)."""
    base = s.root / "finetune_id"
    pretrain_dir = base / f"pretrain_{PRETRAIN_OP}"
    steps = snapshot_steps(s)
    pretrain = train_step(s, f"finetune_id/pretrain_{PRETRAIN_OP}", pretrain_dir,
                          ("+exp=math_equations", f"data.op={PRETRAIN_OP}", "data.train_frac=0.5",
                           "callbacks=snapshots", f"callbacks.snapshots.steps={hydra_list(steps)}",
                           f"trainer.max_steps={PRETRAIN_STEPS}", "trainer.check_val_every_n_epoch=10", "seed=0"))
    sweeps = tuple(sweep_step(s, f"finetune_id/from_step{k}", base / f"from_step{k}",
                              ("+exp=finetune_mod97", f"pretrained={pretrain_dir / 'snapshots' / f'step{k:06d}.ckpt'}"),
                              FINETUNE_VALUES, FINETUNE_SEEDS, 3) for k in steps)
    return Result("finetune_id", "Aghajanyan et al. 2021, offline: fine-tuning d_int90 vs pretraining step",
                  ((pretrain,), sweeps),
                  f"pretrain a·b mod 97 (50 % train, AdamW wd 1, {PRETRAIN_STEPS:,} steps, snapshots at "
                  f"{list(FINETUNE_FROM)}); fine-tune a÷b (50 % train) in a Fastfood subspace for {FINETUNE_STEPS:,} "
                  f"steps (Adam 3e-2 on θ_d) from each snapshot; d ∈ {list(FINETUNE_VALUES)}, seeds "
                  f"{list(FINETUNE_SEEDS)} (P seeded per seed); d_int90 = first d with 90 % held-out accuracy")
