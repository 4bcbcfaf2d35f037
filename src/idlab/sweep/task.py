"""The task function each launched job runs: the training task, bracketed by a run record."""
from __future__ import annotations

import copy
import json
import os
import socket
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from idlab.sweep.identity import run_key
from idlab.sweep.records import LAST_CHECKPOINT, METRICS_FILE, RECORD_FILE, write_json_atomic

_RANK_VARIABLES = ("RANK", "SLURM_PROCID", "LOCAL_RANK", "JSM_NAMESPACE_RANK")


def default_task(cfg: DictConfig) -> Any:
    """idlab's training run (imported lazily so the driver stays light)."""
    from idlab.run import train

    return train(cfg)


@dataclass(frozen=True)
class RecordedTask:
    """Wraps a task function: writes sweep_run.json (key, status, error) around it on rank zero. A job whose
    folder holds an interrupted attempt of the same run with a last.ckpt continues from it (ckpt_path)."""

    task_function: Callable[[DictConfig], Any] = default_task

    def __call__(self, cfg: DictConfig) -> Any:
        out = Path(HydraConfig.get().runtime.output_dir)
        rank_zero = _global_rank() == 0
        key = run_key(cfg)
        resume = resume_checkpoint(out, key)
        record = {"key": key, "status": "running", "started": time.time(),
                  "host": socket.gethostname(), "pid": os.getpid(), **scheduler_job()}
        if resume is not None:
            record["resumed_from"] = str(resume)
            cfg = copy.deepcopy(cfg)
            with open_dict(cfg):
                cfg.ckpt_path = str(resume)
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


def resume_checkpoint(run_dir: Path, key: str) -> Path | None:
    """checkpoints/last.ckpt of `run_dir` when the folder's record is an interrupted attempt of this run."""
    last = run_dir / LAST_CHECKPOINT
    try:
        previous = json.loads((run_dir / RECORD_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if previous.get("key") == key and previous.get("status") == "running" and last.is_file() \
            and not (run_dir / METRICS_FILE).exists():
        return last
    return None


def scheduler_job() -> dict[str, str]:
    """The SLURM job running this run (A_i for an array task, as squeue and submitit name it), if any."""
    env = os.environ
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        return {"slurm_job_id": f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"}
    return {"slurm_job_id": env["SLURM_JOB_ID"]} if env.get("SLURM_JOB_ID") else {}


def _global_rank() -> int:
    """This process's rank under DDP/SLURM (0 when not distributed)."""
    for name in _RANK_VARIABLES:
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 0
