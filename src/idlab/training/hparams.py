"""A run's row in tensorboard's HParams tab: its hyperparameters (from the config) with its final metrics."""
from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from pytorch_lightning.loggers import Logger, TensorBoardLogger
from pytorch_lightning.utilities import rank_zero_only

HPARAMS_FILE = "hparams.yaml"  # Lightning's name for it, next to the event files
# Config groups whose choice names the run (model=fc, data=mnist_mini, adapt=subspace, optim=adam).
GROUPS = ("model", "data", "adapt", "optim")
# Config values that say what a run is, where the config has them (subspace: d, projection; LoRA: r, alpha).
KEYS = ("seed", "optim.optimizer.lr", "optim.optimizer.weight_decay", "adapt.d", "adapt.projection",
        "adapt.said", "adapt.r", "adapt.alpha", "adapt.tuner", "adapt.init_from", "data.batch_size")
# Metrics that are what a run measured (metrics.json keys); params/* are hyperparameters, the rest are curves.
FINAL_PREFIXES = ("val/", "test/", "best/")
FLAGS = ("diverged",)
# Overrides that place or record a run but do not change it (the sweep names its tensorboard runs through logger.*).
SKIPPED_OVERRIDES = ("hydra", "logger", "sweep", "paths", "ckpt_path", "callbacks.progress_bar",
                     "trainer.enable_progress_bar")


def run_hparams(cfg: DictConfig, metrics: Mapping[str, float]) -> dict[str, bool | int | float | str]:
    """The run's hyperparameters: group choices, the KEYS it has, every command-line override, params/*.

    Overrides come from Hydra (train.py, sweep jobs); a swept key (adapt.d=750) is one of them. Values keep the
    config's type (numbers stay numbers), so the HParams tab can sort and plot them."""
    hydra = _hydra_config(cfg)
    choices = dict(hydra.runtime.choices) if hydra is not None else {}
    out: dict[str, bool | int | float | str] = {}
    for group in GROUPS:
        choice = choices.get(group) or _class_name(cfg.get(group))
        if choice:
            out[group] = str(choice)
    for key in (*KEYS, *_override_keys(hydra.overrides.task if hydra is not None else (), choices)):
        value = choices[key] if key in choices else OmegaConf.select(cfg, key, default=None)
        value = _hparam_value(value)
        if value is not None:
            out[key] = value
    for key in ("params/trainable", "params/total"):
        if key in metrics:
            out[key] = int(metrics[key])
    return out


def final_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    """The metrics a run ends with (val/*, test/*, best/*, and diverged where the run says so)."""
    return {k: float(v) for k, v in metrics.items()
            if isinstance(v, (int, float)) and (k.startswith(FINAL_PREFIXES) or k in FLAGS)}


@rank_zero_only
def log_hparams(loggers: Iterable[Logger], hparams: Mapping[str, Any], metrics: Mapping[str, float],
                step: int) -> None:
    """Write the HParams session (start info with the hyperparameters, the final metrics, end info) to every
    TensorBoardLogger, and the hyperparameters to its hparams.yaml; other loggers (CSV) get nothing.

    Lightning's `TensorBoardLogger.log_hyperparams(params, metrics)` also writes an experiment summary per run,
    and tensorboard takes the table's columns from whichever run's summary it finds first (a baseline without
    adapt.d would hide the swept column); without one it builds the columns from every run's hyperparameters,
    and a sweep's report writes one summary for all of its runs (idlab.sweep.report).
    """
    from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2, summary_v2

    for logger in loggers:
        if not isinstance(logger, TensorBoardLogger):
            continue
        logger.log_metrics(dict(metrics), step=step)
        start = summary_v2.hparams_pb(dict(hparams), trial_id=trial_id(logger))
        end = hparams_summary(session_end_info=plugin_data_pb2.SessionEndInfo(status=api_pb2.STATUS_SUCCESS,
                                                                              end_time_secs=time.time()))
        writer = logger.experiment
        writer._get_file_writer().add_summary(start, step)  # noqa: SLF001 - SummaryWriter's raw-summary path
        writer._get_file_writer().add_summary(end, step)  # noqa: SLF001
        writer.close()  # Lightning closed it after fit/test; these summaries went to a fresh event file
        path = Path(logger.log_dir) / HPARAMS_FILE
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(yaml.safe_dump(dict(hparams), sort_keys=True))
        os.replace(tmp, path)


def hparams_summary(**message: Any) -> Any:
    """A tensorboard Summary carrying one HParams plugin message: experiment=, session_start_info= or
    session_end_info= (summary_v2 has no session end, and its experiment cannot say which hparams differ)."""
    from tensorboard.compat.proto import summary_pb2
    from tensorboard.plugins.hparams import metadata, plugin_data_pb2

    (field,) = message
    tag = {"experiment": metadata.EXPERIMENT_TAG, "session_start_info": metadata.SESSION_START_INFO_TAG,
           "session_end_info": metadata.SESSION_END_INFO_TAG}[field]
    summary = summary_pb2.Summary()
    summary.value.add(tag=tag, tensor=metadata.NULL_TENSOR,
                      metadata=metadata.create_summary_metadata(plugin_data_pb2.HParamsPluginData(**message)))
    return summary


def trial_id(logger: TensorBoardLogger) -> str:
    """The HParams row's name: the run's tensorboard folder below the sweep's (adapt.d=750/seed=1), or for a
    plain run its run folder and logger folder (2025-01-31_12-00-00-000000/tensorboard)."""
    parts = [str(p) for p in (logger.name, logger.version) if p not in (None, "")]
    if len(parts) < 2:
        parts.insert(0, Path(logger.save_dir).name)
    return "/".join(parts)


def read_hparams(log_dir: Path) -> dict[str, Any]:
    """The hyperparameters log_hparams wrote next to a run's events ({} when there are none)."""
    try:
        data = yaml.safe_load((Path(log_dir) / HPARAMS_FILE).read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def _hydra_config(cfg: DictConfig) -> DictConfig | None:
    """The Hydra config of the job running `cfg` (train.py, sweep jobs); None for a config composed directly
    (a Hydra config left over from another job in this process writes elsewhere)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    hydra = HydraConfig.get()
    same = OmegaConf.select(hydra, "runtime.output_dir", default=None) == OmegaConf.select(cfg, "paths.output_dir")
    return hydra if same else None


def _override_keys(overrides: Iterable[str], choices: Mapping[str, Any]) -> list[str]:
    """Keys set on the command line (`+exp=x` → exp, `adapt.d=750` → adapt.d), deletions and placement skipped."""
    keys = []
    for override in overrides:
        if override.startswith("~") or "=" not in override:
            continue
        key = override.split("=", 1)[0].lstrip("+")
        if not key.startswith(SKIPPED_OVERRIDES) and (key in choices or "/" not in key):
            keys.append(key)
    return keys


def _class_name(node: Any) -> str | None:
    """model=… etc. without Hydra: the lower-cased class name of the node's _target_."""
    target = node.get("_target_") if isinstance(node, DictConfig) else None
    return str(target).rsplit(".", 1)[-1].lower() if target else None


def _hparam_value(value: Any) -> bool | int | float | str | None:
    """A value tensorboard's HParams accept: bool, finite number or string (lists and dicts as text)."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, (DictConfig, ListConfig)):
        return str(OmegaConf.to_container(value, resolve=True))
    return str(value)
