"""Callback logging "subspace accuracy": val/test accuracy relative to `adapt.baseline_acc`."""
from __future__ import annotations

import pytorch_lightning as pl
import torch


class RelativeAccuracy(pl.Callback):
    """subspace/rel_acc = val/acc ÷ baseline and subspace/rel_test_acc = test/acc ÷ baseline.

    The baseline is the `baseline_acc` attribute the subspace adaptation puts on the adapted network;
    without one (other adaptations, or adapt.baseline_acc=null) the callback does nothing.
    """

    def _relative(self, trainer: pl.Trainer, pl_module: pl.LightningModule, source: str, target: str) -> None:
        baseline = getattr(getattr(pl_module, "net", None), "baseline_acc", None)
        acc = trainer.callback_metrics.get(source)
        if not baseline or acc is None or trainer.sanity_checking:
            return
        value = torch.as_tensor(acc, dtype=torch.float32).cpu() / float(baseline)
        trainer.callback_metrics[target] = value
        for logger in trainer.loggers:
            logger.log_metrics({target: float(value)}, step=trainer.global_step)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """After validation: val/acc relative to the baseline."""
        self._relative(trainer, pl_module, "val/acc", "subspace/rel_acc")

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """After testing: test/acc relative to the baseline."""
        self._relative(trainer, pl_module, "test/acc", "subspace/rel_test_acc")
