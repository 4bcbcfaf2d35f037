"""A Lightning callback that SIGKILLs its own process once, the way a node failure or `kill -9` ends a run."""
from __future__ import annotations

import os
import signal
from pathlib import Path

import pytorch_lightning as pl

MARKER_ENV = "IDLAB_TEST_KILL_MARKER"


class KillSwitch(pl.Callback):
    """At optimiser step `step`, kill this process unless the file named by $IDLAB_TEST_KILL_MARKER exists
    (it is created first, so only the first attempt dies; without the variable the callback does nothing)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx: int) -> None:
        marker = os.environ.get(MARKER_ENV)
        if trainer.global_step == self.step and marker and not Path(marker).exists():
            Path(marker).write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
