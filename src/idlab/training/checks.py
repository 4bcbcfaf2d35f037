"""Configuration checks that must fail before any data is read or any step is taken, and the one-line report
of bad input on the command line."""
from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from omegaconf import DictConfig

_PACKAGE_DIR = str(Path(__file__).resolve().parents[1])


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


def is_bad_input(err: BaseException) -> bool:
    """A configuration, data or checkpoint error whose message names the value and the fix: a ValueError or
    FileNotFoundError raised by idlab itself (ConfigError, DataUnavailableError, IncompatibleDataError, the
    constructors' checks, ...), Hydra's instantiation errors (unknown keys, bad `_target_`s, Trainer arguments)
    and Lightning's MisconfigurationException. A ValueError raised inside torch is a bug, not bad input."""
    from hydra.errors import InstantiationException
    from lightning_fabric.utilities.exceptions import MisconfigurationException

    if isinstance(err, (InstantiationException, MisconfigurationException)):
        return True
    if not isinstance(err, (ValueError, FileNotFoundError)) or err.__traceback__ is None:
        return False
    tb = err.__traceback__
    while tb.tb_next is not None:
        tb = tb.tb_next
    return tb.tb_frame.f_code.co_filename.startswith(_PACKAGE_DIR)


@contextmanager
def bad_input_exits(program: str) -> Iterator[None]:
    """Bad input ends the program with one line on stderr (`<program>: error: <message>`, also written to the
    run's log file) and exit status 2, without a traceback; HYDRA_FULL_ERROR=1 re-raises it with the traceback."""
    try:
        yield
    except Exception as err:  # noqa: BLE001 - anything that is not bad input is re-raised unchanged
        if not is_bad_input(err) or os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        message = one_line(str(err))
        record = logging.LogRecord(program, logging.ERROR, program, 0, f"bad input: {message}", None, None)
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.FileHandler):
                handler.handle(record)
        print(f"{program}: error: {message}", file=sys.stderr)
        sys.exit(2)


def one_line(text: str) -> str:
    """A multi-line message (Hydra's instantiation errors) on one line: `a:` + `b` → `a: b`, else `a; b`."""
    out = ""
    for line in (part.strip() for part in text.splitlines()):
        if line:
            out += (" " if out.endswith(":") else "; ") + line if out else line
    return out
