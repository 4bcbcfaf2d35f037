"""The LightningModule: cross-entropy classification of whatever the adapted network outputs."""
from __future__ import annotations

from collections.abc import Callable

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from idlab.adapt.base import count_trainable
from idlab.training.schedule import WarmupSchedule


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss."""


class Classifier(pl.LightningModule):
    """Trains `net` (already adapted) with `optimizer`; logs loss/accuracy per split and parameter counts."""

    def __init__(self, net: nn.Module, optimizer: Callable[..., torch.optim.Optimizer],
                 schedule: WarmupSchedule | None = None, adapt_metrics: dict[str, float] | None = None) -> None:
        super().__init__()
        self.net, self.optimizer_factory, self.schedule = net, optimizer, schedule or WarmupSchedule()
        self.adapt_metrics = adapt_metrics or {}
        self.nonfinite_step: int | None = None

    def forward(self, x: Tensor) -> Tensor:
        """Logits of the adapted network."""
        return self.net(x)

    def _step(self, batch: tuple[Tensor, Tensor], split: str) -> Tensor:
        x, y = batch
        logits = self.net(x)
        loss = F.cross_entropy(logits, y)
        acc = (logits.argmax(-1) == y).float().mean()
        on_step = split == "train"
        self.log(f"{split}/loss", loss, on_step=on_step, on_epoch=True, prog_bar=split != "test", sync_dist=not on_step)
        self.log(f"{split}/acc", acc, on_step=False, on_epoch=True, prog_bar=split != "train", sync_dist=True)
        return loss

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor | None:
        """One optimisation step; a non-finite loss skips the update and stops the run."""
        loss = self._step(batch, "train")
        if not torch.isfinite(loss):
            self.nonfinite_step = self.global_step
            self.trainer.should_stop = True
            return None
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        """Accumulate validation loss and accuracy."""
        self._step(batch, "val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        """Accumulate test loss and accuracy."""
        self._step(batch, "test")

    def on_fit_start(self) -> None:
        """Log what trains (the framework's own count) next to the adaptation's scalars (e.g. params/total)."""
        counts = {"params/trainable": float(count_trainable(self.net)), **self.adapt_metrics}
        for logger in self.loggers:
            logger.log_metrics(counts, step=0)
        self.param_counts = counts

    def configure_optimizers(self) -> dict:
        """The configured optimiser over trainable parameters, with a per-step schedule."""
        params = [p for p in self.net.parameters() if p.requires_grad]
        optimizer = self.optimizer_factory(params)
        scheduler = self.schedule(optimizer, int(self.trainer.estimated_stepping_batches))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
