"""Configuration checks that must fail before any data is read or any step is taken."""
from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig


class ConfigError(ValueError):
    """A configuration value is invalid; the message names it and the fix."""


def check_config(cfg: DictConfig) -> None:
    """Reject non-positive rates/sizes, impossible epochs and missing resume checkpoints."""
    lr = cfg.optim.optimizer.get("lr")
    if lr is None or lr <= 0:
        raise ConfigError(f"optim.optimizer.lr={lr} must be a positive number (e.g. optim.optimizer.lr=1e-3)")
    wd = cfg.optim.optimizer.get("weight_decay", 0.0) or 0.0
    if wd < 0:
        raise ConfigError(f"optim.optimizer.weight_decay={wd} must be ≥ 0")
    epochs, steps = cfg.trainer.get("max_epochs", -1), cfg.trainer.get("max_steps", -1)
    if (epochs is None or epochs <= 0) and (steps is None or steps <= 0):
        raise ConfigError(f"trainer.max_epochs={epochs} and trainer.max_steps={steps}: set one to a positive number")
    if cfg.get("ckpt_path") not in (None, "last") and not Path(cfg.ckpt_path).is_file():
        raise ConfigError(f"ckpt_path={cfg.ckpt_path} does not exist; give an existing .ckpt "
                          "(e.g. outputs/<name>/<run>/checkpoints/last.ckpt) or ckpt_path=last inside that run's "
                          "folder via hydra.run.dir=<run folder>")
    if cfg.monitor_mode not in ("min", "max"):
        raise ConfigError(f"monitor_mode={cfg.monitor_mode!r} must be 'min' or 'max'")


def resolve_ckpt_path(ckpt_path: str | None, output_dir: str) -> str | None:
    """"last" means this run folder's checkpoints/last.ckpt, which must exist."""
    if ckpt_path != "last":
        return ckpt_path
    last = Path(output_dir) / "checkpoints" / "last.ckpt"
    if not last.is_file():
        raise ConfigError(f"ckpt_path=last but {last} does not exist; point hydra.run.dir at the killed run's folder "
                          "or give ckpt_path=<path to a .ckpt>")
    return str(last)
