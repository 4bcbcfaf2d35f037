"""Model snapshots at chosen optimiser steps, kept forever: θ0 candidates for fine-tuning-ID experiments."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback


class Snapshots(Callback):
    """Write `dirpath`/stepNNNNNN.ckpt at each listed optimiser step (0: the initial weights, before training)."""

    def __init__(self, dirpath: str, steps: Sequence[int]) -> None:
        steps = list(steps)
        if not steps or not all(isinstance(s, int) and s >= 0 for s in steps):
            raise ValueError(f"callbacks.snapshots.steps={steps} must be a non-empty list of optimiser steps ≥ 0, "
                             "e.g. [0,100,1000]")
        self.dirpath, self.steps = Path(dirpath), frozenset(steps)

    def path(self, step: int) -> Path:
        """Where the snapshot of `step` goes."""
        return self.dirpath / f"step{step:06d}.ckpt"

    def save(self, trainer: pl.Trainer, step: int) -> None:
        """Save on every rank (Lightning writes from rank zero, atomically through the checkpoint plugin)."""
        if step in self.steps and not self.path(step).is_file():
            trainer.save_checkpoint(self.path(step))

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Step 0 (or the resumed step) before any update."""
        self.save(trainer, trainer.global_step)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch,
                           batch_idx: int) -> None:
        """After each optimiser step."""
        self.save(trainer, trainer.global_step)
