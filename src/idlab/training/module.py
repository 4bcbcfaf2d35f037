"""The LightningModule: cross-entropy classification of whatever the adapted network outputs."""
from __future__ import annotations

import math
from collections.abc import Callable

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.trainer.states import TrainerFn
from torch import Tensor, nn

from idlab.adapt.base import count_trainable
from idlab.data.chunks import Chunk
from idlab.models.base import evaluation
from idlab.training import fast_log
from idlab.training.graphed import GraphPolicy, GraphSteps
from idlab.training.nonfinite import NonFiniteGuard, NonFiniteLossError
from idlab.training.schedule import WarmupSchedule

fast_log.install()  # self.log without Lightning's per-call walk of the metric (training/fast_log.py)


class Classifier(GraphSteps, pl.LightningModule):
    """Trains `net` (already adapted) with `optimizer`; logs loss/accuracy per split and parameter counts.

    With `graph` (a GraphPolicy) the training steps may run as replayed CUDA graphs (training/graphed.py).
    """

    validation_runs_net = True  # validation_step runs `net` once on each batch's inputs: ActivationID may record it

    def __init__(self, net: nn.Module, optimizer: Callable[..., torch.optim.Optimizer],
                 schedule: WarmupSchedule | None = None, adapt_metrics: dict[str, float] | None = None,
                 graph: GraphPolicy | None = None) -> None:
        super().__init__()
        self.net, self.optimizer_factory, self.schedule = net, optimizer, schedule or WarmupSchedule()
        self.adapt_metrics = adapt_metrics or {}
        self.guard = NonFiniteGuard()
        self.probe_batch: tuple[Tensor, Tensor] | None = None
        self.last_good_train: dict[str, float] = {}
        self.graph_policy = graph

    def forward(self, x: Tensor) -> Tensor:
        """Logits of the adapted network."""
        return self.net(x)

    def _step(self, batch: tuple[Tensor, Tensor], split: str) -> Tensor:
        x, y = batch
        logits = self.net(x)
        loss = F.cross_entropy(logits, y)
        acc = (logits.argmax(-1) == y).float().mean()
        on_step, bar = split == "train", self.progress_bar_shown
        self.log(f"{split}/loss", loss, on_step=on_step, on_epoch=True, prog_bar=bar and split != "test",
                 sync_dist=not on_step)
        self.log(f"{split}/acc", acc, on_step=False, on_epoch=True, prog_bar=bar and split != "train", sync_dist=True)
        return loss

    @property
    def progress_bar_shown(self) -> bool:
        """Whether a progress bar displays this run's values. Lightning turns every `prog_bar` value into a Python
        number (a host-device synchronisation on the GPU) each time it gathers its metrics, about 20 times an
        epoch of a Li-grid run, whether or not a bar shows them; without a bar the values are logged without
        `prog_bar`."""
        return self._trainer is not None and self.trainer.progress_bar_callback is not None

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        """One optimisation step; the previous step's loss is checked for NaN/inf (no GPU stall)."""
        if isinstance(batch, Chunk):  # several graph-captured steps (GraphSteps)
            return self.train_chunk(batch)
        self.raise_if_nonfinite()
        loss = self._step(batch, "train")
        self.guard.push(self.global_step, loss)
        self.probe_batch = (batch[0].detach(), batch[1].detach())  # for the loss check before a checkpoint
        return loss

    def raise_if_nonfinite(self) -> None:
        """Raise NonFiniteLossError (on every rank at once) if a queued loss was NaN/inf; on the graph path this
        waits for the chunks' losses already queued (the guard's per-step flag covers the eager path)."""
        if self.graph is not None and self.graph.active:
            bad = self.graph.watch.check()
            if bad is not None and self.guard.bad_step is None:
                self.guard.bad_step = bad
        if not self.guard.finite_so_far():
            self._raise_diverged()

    def check_before_checkpoint(self) -> None:
        """Weights, buffers and optimiser state finite and a finite loss on the last training batch, on every rank;
        raises NonFiniteLossError otherwise, so the checkpoint about to be written (or named best/last) never is."""
        tensors = [*self.net.parameters(), *self.net.buffers()]
        if self._trainer is not None:
            for optimizer in self.trainer.optimizers:
                tensors += [t for state in optimizer.state.values() for t in state.values() if torch.is_tensor(t)]
        reduce = self.trainer.strategy.reduce_boolean_decision if self._trainer is not None else bool
        self.raise_if_nonfinite()
        if not self.guard.checkpoint_safe(self.global_step, tensors, self._probe_loss, reduce):
            self._raise_diverged()

    def _probe_loss(self) -> Tensor:
        """Cross-entropy of the adapted network on the last training batch, in eval mode without gradients."""
        if self.probe_batch is None:
            return torch.zeros(())
        x, y = self.probe_batch
        with evaluation(self.net):
            return F.cross_entropy(self.net(x), y)

    def _raise_diverged(self) -> None:
        """NonFiniteLossError naming the first bad step and the last checkpoint written."""
        step = self.guard.bad_step if self.guard.bad_step is not None else self.global_step
        checkpoint = self._trainer.checkpoint_callback if self._trainer is not None else None
        last = checkpoint.last_model_path if checkpoint is not None and checkpoint.last_model_path else "none yet"
        raise NonFiniteLossError(
            f"loss or weights became NaN/inf at step {step}; training stopped before writing another checkpoint "
            f"(last good checkpoint: {last}). Lower optim.optimizer.lr, set trainer.gradient_clip_val, or check "
            "the data.", step)

    def _fitting(self) -> bool:
        """Inside trainer.fit, outside the sanity check (validate/test of a finished run check nothing)."""
        return self._trainer is not None and self.trainer.state.fn == TrainerFn.FITTING \
            and not self.trainer.sanity_checking

    def on_validation_start(self) -> None:
        """Checkpoints are written after validation: never validate (or save) diverged weights."""
        if self._fitting():
            self.check_before_checkpoint()

    def on_train_epoch_end(self) -> None:
        """ModelCheckpoint may save at epoch end, after this hook: check fully first when it will (else only the
        loss flags; the graph path without waiting), then keep this epoch's train/* as the run's last good
        training metrics."""
        will_save = any(getattr(c, "_should_save_on_train_epoch_end", lambda trainer: True)(self.trainer)
                        for c in self.trainer.checkpoint_callbacks)
        if will_save:
            self.check_before_checkpoint()
        elif self.graph is not None:
            self.graph_epoch_end()
        else:
            self.raise_if_nonfinite()
        train = {k: v for k, v in self.trainer.callback_metrics.items() if k.startswith("train/")}
        values = fast_log.host_floats(list(train.values()))  # one transfer, not one synchronisation per value
        self.last_good_train = {k: v for k, v in zip(train, values) if math.isfinite(v)}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Every checkpoint (ModelCheckpoint, snapshots, step-based) passes the full check on every rank first."""
        if self._fitting():
            self.check_before_checkpoint()
        super().on_save_checkpoint(checkpoint)  # the graph path adds its optimiser state

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
