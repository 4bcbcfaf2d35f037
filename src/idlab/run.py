"""One training run, top to bottom: check → data → model → adaptation → trainer → fit → test → metrics.json."""
from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig
from pytorch_lightning.callbacks import LearningRateMonitor

from idlab.training.checkpoint_io import AtomicCheckpointIO
from idlab.training.checks import check_config, resolve_ckpt_path
from idlab.training.module import Classifier
from idlab.training.results import scalar_metrics, write_json_atomic


def make(node: DictConfig, **kwargs):
    """hydra.utils.instantiate, re-raising a constructor's own ValueError (a bad config value) unwrapped."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as err:
        if isinstance(err.__cause__, ValueError):
            raise err.__cause__ from None
        raise


def build_module(cfg: DictConfig, data: pl.LightningDataModule) -> Classifier:
    """Model from the data's spec, wrapped by the adaptation, inside the Classifier."""
    net = make(cfg.model, spec=data.spec)
    total = sum(p.numel() for p in net.parameters())
    adaptation = make(cfg.adapt)
    adapted = adaptation.apply(net)
    return Classifier(net=adapted, optimizer=make(cfg.optim.optimizer),
                      schedule=make(cfg.optim.schedule),
                      adapt_metrics={"params/total": float(total), **adaptation.log_dict(adapted)})


def build_trainer(cfg: DictConfig) -> pl.Trainer:
    """Trainer with the configured callbacks and loggers and atomic checkpoint writes."""
    loggers = [instantiate(lg) for lg in (cfg.get("logger") or {}).values() if lg]
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c]
    if not loggers:  # logger=none: a learning-rate monitor would have nowhere to write
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    return instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, plugins=[AtomicCheckpointIO()])


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit and test one configuration; returns (and writes to metrics.json) its final metrics."""
    check_config(cfg)
    output_dir = Path(cfg.paths.output_dir)
    ckpt_path = resolve_ckpt_path(cfg.get("ckpt_path"), str(output_dir))
    pl.seed_everything(cfg.seed, workers=True)

    data = make(cfg.data)
    data.check_available()  # missing files fail here on every rank, before any model is built; Lightning then
    # calls prepare_data (downloads, caches) on one process per node and setup (loading) on every rank
    module = build_module(cfg, data)
    trainer = build_trainer(cfg)

    trainer.fit(module, datamodule=data, ckpt_path=ckpt_path)
    metrics = scalar_metrics(trainer.callback_metrics)
    checkpoint = trainer.checkpoint_callback
    if checkpoint is not None and checkpoint.best_model_score is not None:
        metrics[f"best/{cfg.monitor}"] = float(checkpoint.best_model_score)
    if cfg.get("test", True):
        best = "best" if checkpoint is not None and checkpoint.best_model_path else None
        trainer.test(module, datamodule=data, ckpt_path=best, verbose=False)
        metrics.update(scalar_metrics(trainer.callback_metrics))
    metrics.update(getattr(module, "param_counts", {}))
    metrics.update({"epoch": float(trainer.current_epoch), "global_step": float(trainer.global_step)})
    if trainer.is_global_zero:
        write_json_atomic(output_dir / "metrics.json", metrics)
    return metrics
