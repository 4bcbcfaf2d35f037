"""The task function each launched job runs: the training task, bracketed by a run record."""
from __future__ import annotations

import os
import socket
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from idlab.sweep.identity import run_key
from idlab.sweep.records import METRICS_FILE, RECORD_FILE, write_json_atomic

_RANK_VARIABLES = ("RANK", "SLURM_PROCID", "LOCAL_RANK", "JSM_NAMESPACE_RANK")


def default_task(cfg: DictConfig) -> Any:
    """idlab's training run (imported lazily so the driver stays light)."""
    from idlab.run import train

    return train(cfg)


@dataclass(frozen=True)
class RecordedTask:
    """Wraps a task function: writes sweep_run.json (key, status, error) around it on rank zero."""

    task_function: Callable[[DictConfig], Any] = default_task

    def __call__(self, cfg: DictConfig) -> Any:
        out = Path(HydraConfig.get().runtime.output_dir)
        rank_zero = _global_rank() == 0
        record = {"key": run_key(cfg), "status": "running", "started": time.time(),
                  "host": socket.gethostname(), "pid": os.getpid()}
        if rank_zero:
            write_json_atomic(out / RECORD_FILE, record)
        try:
            result = self.task_function(cfg)
        except BaseException as err:
            if rank_zero:
                record.update(status="failed", finished=time.time(), error=f"{type(err).__name__}: {err}",
                              traceback=traceback.format_exc(limit=20))
                write_json_atomic(out / RECORD_FILE, record)
            raise
        if rank_zero:
            wrote_metrics = (out / METRICS_FILE).is_file()
            record.update(status="done" if wrote_metrics else "failed", finished=time.time(),
                          error=None if wrote_metrics else f"the task returned without writing {METRICS_FILE}")
            write_json_atomic(out / RECORD_FILE, record)
        return result


def _global_rank() -> int:
    """This process's rank under DDP/SLURM (0 when not distributed)."""
    for name in _RANK_VARIABLES:
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 0
