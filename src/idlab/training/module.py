"""The LightningModule: cross-entropy classification of whatever the adapted network outputs."""
from __future__ import annotations

from collections.abc import Callable

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from idlab.adapt.base import count_trainable
from idlab.data.chunks import Chunk
from idlab.training.graphed import GraphPolicy, GraphSteps
from idlab.training.nonfinite import LossWatch, NonFiniteLossError
from idlab.training.schedule import WarmupSchedule


class Classifier(GraphSteps, pl.LightningModule):
    """Trains `net` (already adapted) with `optimizer`; logs loss/accuracy per split and parameter counts.

    With `graph` (a GraphPolicy) the training steps may run as replayed CUDA graphs (training/graphed.py).
    """

    def __init__(self, net: nn.Module, optimizer: Callable[..., torch.optim.Optimizer],
                 schedule: WarmupSchedule | None = None, adapt_metrics: dict[str, float] | None = None,
                 graph: GraphPolicy | None = None) -> None:
        super().__init__()
        self.net, self.optimizer_factory, self.schedule = net, optimizer, schedule or WarmupSchedule()
        self.adapt_metrics = adapt_metrics or {}
        self.loss_watch = LossWatch()
        self.graph_policy = graph

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

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        """One optimisation step; the previous step's loss is checked for NaN/inf (no GPU stall)."""
        if isinstance(batch, Chunk):  # several graph-captured steps (GraphSteps)
            return self.train_chunk(batch)
        self.raise_if_nonfinite()
        loss = self._step(batch, "train")
        self.loss_watch.push(self.global_step, loss)
        return loss

    def raise_if_nonfinite(self) -> None:
        """Stop the run, before any further checkpoint is written, if the last queued loss was NaN/inf."""
        step = self.loss_watch.check()
        if step is None:
            return
        checkpoint = self.trainer.checkpoint_callback
        last = checkpoint.last_model_path if checkpoint is not None and checkpoint.last_model_path else "none yet"
        raise NonFiniteLossError(
            f"loss became NaN/inf at step {step}; the run stopped before writing another checkpoint. "
            f"Last good checkpoint: {last}. Lower optim.optimizer.lr, set trainer.gradient_clip_val, or check the data.")

    def on_validation_start(self) -> None:
        """Checkpoints are written after validation: make sure the weights are still finite."""
        self.raise_if_nonfinite()

    def on_train_epoch_end(self) -> None:
        """Checkpoints are written at epoch end: make sure the weights are still finite."""
        if self.graph is not None:  # the graph path checks without waiting here, and waits before checkpoints
            return self.graph_epoch_end()
        self.raise_if_nonfinite()

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
