"""One training run, top to bottom: check → data → model → adaptation → trainer → fit → test → metrics.json →
the run's HParams row in tensorboard."""
from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytorch_lightning as pl
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig
from pytorch_lightning.callbacks import LearningRateMonitor

from idlab.training.checkpoint_io import AtomicCheckpointIO
from idlab.training.checks import check_config, resolve_ckpt_path
from idlab.training.hparams import final_metrics, log_hparams, run_hparams
from idlab.training.module import Classifier
from idlab.training.nonfinite import NonFiniteLossError
from idlab.training.results import code_version, scalar_metrics, write_json_atomic

log = logging.getLogger(__name__)

# Runs side by side in one process (sweep.side_by_side) build one at a time: the global RNG seeds the init.
BUILD_LOCK = threading.Lock()


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
                      adapt_metrics={"params/total": float(total), **adaptation.log_dict(adapted)},
                      graph=make(cfg.graph) if cfg.get("graph") else None)


def build_trainer(cfg: DictConfig) -> pl.Trainer:
    """Trainer with the configured callbacks and loggers and atomic checkpoint writes."""
    loggers = [instantiate(lg) for lg in (cfg.get("logger") or {}).values() if lg]
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c]
    if not loggers:  # logger=none: a learning-rate monitor would have nowhere to write
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    return instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, plugins=[AtomicCheckpointIO()])


def route_lightning_logs() -> None:
    """Lightning keeps its log records to itself when it is imported before logging is configured (train.py and
    the sweep tests import it before Hydra sets up the job's log): once the root logger has handlers (Hydra's
    console and train.log), send Lightning's records there instead of Lightning's own stream handler, so train.log
    holds them too."""
    if not logging.getLogger().handlers:
        return
    for name in ("pytorch_lightning", "lightning_fabric"):
        logger = logging.getLogger(name)
        if not logger.propagate:
            logger.handlers = [h for h in logger.handlers if type(h) is not logging.StreamHandler]
            logger.propagate = True


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit and test one configuration; returns (and writes to metrics.json) its final metrics.

    A run whose loss or weights go NaN/inf is a result, not a crash: it stops before writing another checkpoint and
    reports the val/test metrics of its last good checkpoint (none: no val/test keys), with `diverged: true`.
    """
    route_lightning_logs()
    check_config(cfg)
    output_dir = Path(cfg.paths.output_dir)
    ckpt_path = resolve_ckpt_path(cfg.get("ckpt_path"), str(output_dir))
    with BUILD_LOCK:
        pl.seed_everything(cfg.seed, workers=True)
        data = make(cfg.data)
        data.check_available()  # missing files fail here on every rank, before any model is built; Lightning then
        # calls prepare_data (downloads, caches) on one process per node and setup (loading) on every rank
        module = build_module(cfg, data)
    trainer = build_trainer(cfg)

    try:
        trainer.fit(module, datamodule=data, ckpt_path=ckpt_path)
        diverged = None
    except NonFiniteLossError as err:
        diverged = err
    checkpoint = trainer.checkpoint_callback
    if diverged is None:
        metrics = {**scalar_metrics(trainer.callback_metrics), "diverged": False}
        if checkpoint is not None and checkpoint.best_model_score is not None:
            metrics[f"best/{cfg.monitor}"] = float(checkpoint.best_model_score)
        if cfg.get("test", True):
            best = "best" if checkpoint is not None and checkpoint.best_model_path else None
            trainer.test(module, datamodule=data, ckpt_path=best, verbose=False)
            metrics.update(scalar_metrics(trainer.callback_metrics))
    else:
        metrics = diverged_metrics(cfg, trainer, module, data, diverged)
    metrics.update(getattr(module, "param_counts", {}))
    metrics.update({"epoch": float(trainer.current_epoch), "global_step": float(trainer.global_step),
                    "chance/acc": 1.0 / data.spec.num_classes})
    if trainer.is_global_zero:
        write_json_atomic(output_dir / "metrics.json", {**metrics, "code": code_version()})
        log_hparams(trainer.loggers, run_hparams(cfg, metrics), final_metrics(metrics), step=trainer.global_step)
    return metrics


def diverged_metrics(cfg: DictConfig, trainer: pl.Trainer, module: Classifier, data: pl.LightningDataModule,
                     err: NonFiniteLossError) -> dict[str, float]:
    """The last good state of a diverged run: train/* of its last good epoch, val/* and test/* re-evaluated on its
    best checkpoint (every checkpoint on disk passed the guard), or none of them when no checkpoint was written."""
    metrics: dict[str, float] = {**module.last_good_train, "diverged": True, "diverged_step": float(err.step)}
    checkpoint = trainer.checkpoint_callback
    paths = [checkpoint.best_model_path, checkpoint.last_model_path] if checkpoint is not None else []
    good = next((p for p in paths if p and Path(p).is_file()), None)
    if good is not None:
        stages = [(trainer.validate, "val/")] + ([(trainer.test, "test/")] if cfg.get("test", True) else [])
        for stage, prefix in stages:
            stage(module, datamodule=data, ckpt_path=good, verbose=False)
            metrics.update({k: v for k, v in scalar_metrics(trainer.callback_metrics).items() if k.startswith(prefix)})
    if trainer.is_global_zero:
        log.warning("%s The run is recorded as diverged: %s.", err,
                    f"val/test metrics of {good}" if good else "no checkpoint was written, so no val/test metrics "
                    "(a sweep counts it at chance, chance/acc)")
    return metrics
