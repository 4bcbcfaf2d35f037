"""The task function each launched job runs: the training task, bracketed by a run record.

A launched job may carry further runs of the sweep (`sweep.runs_per_job`): the driver writes their composed
job configs into the job's folder (`sweep_members.json`) and the job runs them after its own, in the same
process, so imports, CUDA initialisation and compiled kernels are paid once. Each member is an ordinary Hydra
job with its own folder, record, metrics, checkpoints and resume; a failed member is recorded and the others
go on. With `sweep.side_by_side` > 1 the job's runs train concurrently in threads, each on its own CUDA stream,
so small models share the GPU inside one process.
"""
from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import re
import socket
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from idlab.sweep.identity import run_key
from idlab.sweep.records import LAST_CHECKPOINT, METRICS_FILE, RECORD_FILE, write_json_atomic

MEMBERS_FILE = "sweep_members.json"
_RANK_VARIABLES = ("RANK", "SLURM_PROCID", "LOCAL_RANK", "JSM_NAMESPACE_RANK")
_HYDRA_INTERPOLATION = re.compile(r"\$\{hydra:([^}]+)\}")

log = logging.getLogger(__name__)


def default_task(cfg: DictConfig) -> Any:
    """idlab's training run (imported lazily so the driver stays light)."""
    from idlab import startup_imports

    with startup_imports():
        from idlab.run import train

    return train(cfg)


@dataclass(frozen=True)
class RecordedTask:
    """Wraps a task function: writes sweep_run.json (key, status, error) around it on rank zero, then runs the
    job's member runs (if the driver packed any into it). A run whose folder holds an interrupted attempt of the
    same run with a last.ckpt continues from it (ckpt_path)."""

    task_function: Callable[[DictConfig], Any] = default_task

    def __call__(self, cfg: DictConfig) -> Any:
        out = Path(HydraConfig.get().runtime.output_dir)
        packed = read_members(out)
        if packed and packed["side_by_side"] > 1:
            return run_side_by_side(self.task_function, [(cfg, out)] + member_jobs(packed), packed["side_by_side"])
        try:
            return recorded(self.task_function, cfg, out)
        finally:
            if packed:
                run_in_sequence(self, [job_config(m["config"]) for m in packed["members"]],
                                [m["num"] for m in packed["members"]])


def recorded(task_function: Callable[[DictConfig], Any], cfg: DictConfig, out: Path) -> Any:
    """Run the task with its record in `out` (status running → done/failed with the error and traceback); an
    interrupted attempt of the same run in `out` is continued from its last.ckpt."""
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
        result = task_function(cfg)
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


def write_members(job_dir: Path, members: list[tuple[int, DictConfig]], side_by_side: int) -> None:
    """Driver side: the runs (folder number, composed job config) a launched job runs besides its own."""
    payload = {"side_by_side": side_by_side,
               "members": [{"num": num, "config": OmegaConf.to_container(cfg, resolve=False)} for num, cfg in members]}
    write_json_atomic(job_dir / MEMBERS_FILE, payload)


def read_members(job_dir: Path) -> dict[str, Any] | None:
    """The job's packed runs, or None."""
    try:
        return json.loads((job_dir / MEMBERS_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def job_config(data: dict[str, Any]) -> DictConfig:
    """A member's job config from the members file, its hydra node typed again (HydraConfig requires it)."""
    from hydra.conf import HydraConf

    cfg = OmegaConf.create(data)
    schema = OmegaConf.structured(HydraConf)
    OmegaConf.set_struct(schema, False)  # the composed node carries keys the schema does not list
    with open_dict(cfg):
        cfg.hydra = OmegaConf.merge(schema, cfg.hydra)
    return cfg


def run_in_sequence(task: RecordedTask, configs: list[DictConfig], nums: list[int]) -> None:
    """Members one after another, each through Hydra's own run_job (folder, .hydra/, logging, job callbacks)."""
    from hydra._internal.callbacks import Callbacks
    from hydra.core.utils import run_job
    from hydra.types import HydraContext

    loader = GlobalHydra.instance().config_loader()
    for cfg, num in zip(configs, nums):
        _number(cfg, num)
        try:  # the task's own errors are recorded inside; this catches the job set-up's, so the others still run
            run_job(task_function=task, config=cfg, job_dir_key="hydra.sweep.dir",
                    job_subdir_key="hydra.sweep.subdir",
                    hydra_context=HydraContext(config_loader=loader, callbacks=Callbacks(cfg)))
        except Exception:  # noqa: BLE001 - logged; the run has no record yet, so the next invocation reruns it
            log.exception("packed run %d could not start", num)


def member_jobs(packed: dict[str, Any]) -> list[tuple[DictConfig, Path]]:
    """(task config, run folder) of each member, its folder written as run_job would (side-by-side members)."""
    jobs = []
    for member in packed["members"]:
        cfg = job_config(member["config"])
        _number(cfg, member["num"])
        out = Path(os.path.abspath(os.path.join(str(cfg.hydra.sweep.dir), str(member["num"]))))
        with open_dict(cfg.hydra.runtime):
            cfg.hydra.runtime.output_dir = str(out)
        hydra_dir = out / str(cfg.hydra.output_subdir or ".hydra")
        task_cfg = _without_hydra(cfg)
        hydra_dir.mkdir(parents=True, exist_ok=True)
        (hydra_dir / "config.yaml").write_text(OmegaConf.to_yaml(task_cfg))
        (hydra_dir / "hydra.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create({"hydra": cfg.hydra})))
        (hydra_dir / "overrides.yaml").write_text(OmegaConf.to_yaml(cfg.hydra.overrides.task))
        jobs.append((task_cfg, out))
    return jobs


def run_side_by_side(task_function: Callable[[DictConfig], Any], jobs: list[tuple[DictConfig, Path]],
                     threads: int) -> Any:
    """Train the jobs concurrently in `threads` threads; returns the first job's result (raises its error)."""
    head_cfg, head_out = jobs[0]
    jobs[0] = (_without_hydra(_with_hydra(head_cfg)), head_out)
    with _shared_process():
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="run") as pool:
            futures = [pool.submit(_run_thread, task_function, cfg, out) for cfg, out in jobs]
    errors = [f.exception() for f in futures]
    if errors[0] is not None:
        raise errors[0]
    return futures[0].result()


@contextlib.contextmanager
def _shared_process() -> Iterator[None]:
    """What runs training side by side in one process must not do to each other, undone afterwards:

    - Lightning saves the global RNG before every fit's sanity check and restores it after; that restore must not
      land while another run seeds and builds its model (run.py holds BUILD_LOCK for that), nor touch the CUDA
      generator the other runs draw from;
    - Lightning frees the cuBLAS workspaces and the allocator's cache at every fit's and test's start and end;
      the other runs' captured CUDA graphs point into those workspaces;
    - the head job's train.log handler would collect every run's lines (each run writes its own instead).
    """
    import pytorch_lightning.accelerators.cuda as lightning_cuda
    import pytorch_lightning.trainer.trainer as lightning_trainer

    from idlab.run import BUILD_LOCK

    isolate_rng, clear_cuda_memory = lightning_trainer.isolate_rng, lightning_cuda._clear_cuda_memory  # noqa: SLF001

    @contextlib.contextmanager
    def isolate_rng_locked(include_cuda: bool = True) -> Iterator[None]:
        with BUILD_LOCK, isolate_rng(include_cuda=False):
            yield

    root = logging.getLogger()
    job_files = [h for h in root.handlers if isinstance(h, logging.FileHandler)]
    lightning_trainer.isolate_rng = isolate_rng_locked
    lightning_cuda._clear_cuda_memory = lambda: None  # noqa: SLF001
    for handler in job_files:
        root.removeHandler(handler)
    try:
        yield
    finally:
        lightning_trainer.isolate_rng = isolate_rng
        lightning_cuda._clear_cuda_memory = clear_cuda_memory  # noqa: SLF001
        for handler in job_files:
            root.addHandler(handler)


def _run_thread(task_function: Callable[[DictConfig], Any], cfg: DictConfig, out: Path) -> Any:
    """One side-by-side run: its own CUDA stream, its own train.log, its own record."""
    handler = logging.FileHandler(out / "train.log")
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
    ident = threading.get_ident()
    handler.addFilter(lambda r: r.thread == ident)
    logging.getLogger().addHandler(handler)
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.set_stream(torch.cuda.Stream())
        return recorded(task_function, cfg, out)
    except Exception:  # noqa: BLE001 - recorded in sweep_run.json; the other runs go on
        log.exception("run in %s failed", out)
        raise
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()


def _with_hydra(task_cfg: DictConfig) -> DictConfig:
    """The head job's task config with its hydra node back (the head's HydraConfig), for interpolation."""
    cfg = copy.deepcopy(task_cfg)
    with open_dict(cfg):
        cfg.hydra = HydraConfig.get()
    return cfg


def _without_hydra(cfg: DictConfig) -> DictConfig:
    """The task config of a job, with ${hydra:...} interpolations replaced by this job's values (thread-safe:
    nothing reads the process-wide HydraConfig later)."""
    hydra = cfg.hydra
    text = OmegaConf.to_yaml(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]))
    text = _HYDRA_INTERPOLATION.sub(lambda m: str(OmegaConf.select(hydra, m.group(1))), text)
    return OmegaConf.create(text)


def _number(cfg: DictConfig, num: int) -> None:
    """Give a member job config its job number (its folder is hydra.sweep.dir/<num>)."""
    with open_dict(cfg):
        cfg.hydra.job.num = num
        cfg.hydra.job.id = f"{cfg.hydra.job.name}_{num}"


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
