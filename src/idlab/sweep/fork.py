"""The fork launcher's work: each job in a process forked from the driver, at most n_jobs at a time.

Hydra's joblib launcher hard-codes loky, whose workers start a new interpreter and import torch, Lightning and
idlab afresh (6–9 s each on the GPU machine, docs/benchmarks.md). A forked child inherits the driver's imports
instead. Forking is only safe before the driver initialises CUDA (a forked child cannot use the parent's CUDA
context), so the launcher checks that and each child initialises its own. Each child computes with one CPU
thread (as PyTorch's DataLoader workers do): GNU OpenMP, torch's CPU thread pool, hangs in a forked child
whose parent has used it. A child runs one job, sends its JobReturn back through a pipe and exits; one that
dies without sending fails its own job and no other.

Processes on one GPU run their kernels by turns (CUDA time-slices between contexts), so small runs in separate
processes leave the GPU mostly waiting; with `hydra.launcher.mps=true` the launcher starts a private CUDA MPS
control daemon for the launch (`MpsDaemon`) and the children connect to it, so their kernels run concurrently.
"""
from __future__ import annotations

import atexit
import gc
import importlib
import logging
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, Sequence

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, run_job, setup_globals
from omegaconf import open_dict

from idlab import startup_imports
from idlab.sweep.spec import SweepConfigError

log = logging.getLogger(__name__)


MPS_CONTROL = "nvidia-cuda-mps-control"
MPS_VARIABLES = ("CUDA_MPS_PIPE_DIRECTORY", "CUDA_MPS_LOG_DIRECTORY")


def check_fork_settings(n_jobs: Any, mps: Any = False) -> int:
    """The number of processes to run at once; a clear error when a value or the platform cannot work."""
    if "fork" not in multiprocessing.get_all_start_methods():
        raise SweepConfigError(f"hydra/launcher=fork needs the fork start method, which {sys.platform} lacks; "
                               "use hydra/launcher=joblib")
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or not (n_jobs >= 1 or n_jobs == -1):
        raise SweepConfigError(f"hydra.launcher.n_jobs={n_jobs!r} is not a number of processes: give an integer "
                               "≥ 1, or -1 for one per CPU core")
    if not isinstance(mps, bool):
        raise SweepConfigError(f"hydra.launcher.mps={mps!r} must be true or false")
    if mps and shutil.which(MPS_CONTROL) is None:
        raise SweepConfigError(f"hydra.launcher.mps=true needs {MPS_CONTROL} (NVIDIA's driver utilities) on PATH, "
                               "and it is not there; set hydra.launcher.mps=false")
    return n_jobs if n_jobs >= 1 else os.cpu_count() or 1


def preload(modules: Sequence[str]) -> None:
    """Import what every job needs into the driver, then check that nothing has initialised CUDA: a forked child
    cannot use CUDA once its parent has. Called from the launcher's setup, outside the launch that
    HydraSession.launch guards, so a failure here stops the sweep with its message."""
    with startup_imports():
        for module in modules:
            importlib.import_module(module)
    gc.freeze()  # right before the forks, as Python's gc docs advise: children leave the driver's objects untouched
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        raise SweepConfigError("hydra/launcher=fork: CUDA is already initialised in the driver process, and a "
                               "forked job could not use it; launch from a process that has not touched the GPU, "
                               "or use hydra/launcher=joblib")


class MpsDaemon:
    """A private CUDA MPS control daemon (`nvidia-cuda-mps-control -d`) for one launch.

    Its pipe and log folders are a fresh temporary folder, named to the children through CUDA_MPS_PIPE_DIRECTORY
    and CUDA_MPS_LOG_DIRECTORY in the driver's environment (a child reads them when it initialises CUDA), so only
    this sweep's jobs become its clients; other processes on the machine keep their own contexts. `stop` restores the
    environment and, in a thread that first waits for the finished jobs' processes to exit (the daemon would wait
    for its clients too), sends `quit` and removes the folder; the driver's exit waits for that. The card's settings
    (compute mode and the rest) are left as they are. MPS clients share one server: a job that crashes the GPU
    itself (an illegal memory access; not a Python error, not a diverged run) can fail the other running jobs."""

    def __init__(self) -> None:
        self.control = shutil.which(MPS_CONTROL) or MPS_CONTROL
        self.root: Path | None = None
        self.env: dict[str, str] = {}
        self.saved: dict[str, str | None] = {}
        self.quitter: threading.Thread | None = None

    def start(self) -> None:
        """Start the daemon; a clear error when it does not start."""
        self.root = Path(tempfile.mkdtemp(prefix="idlab-mps-"))
        env = {name: str(self.root / folder) for name, folder in zip(MPS_VARIABLES, ("pipe", "log"))}
        for folder in env.values():
            Path(folder).mkdir()
        started = subprocess.run([self.control, "-d"], env={**os.environ, **env}, capture_output=True, text=True,
                                 timeout=60)
        if started.returncode != 0:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None
            raise SweepConfigError(f"hydra.launcher.mps=true: `{self.control} -d` failed (exit {started.returncode}: "
                                   f"{(started.stderr or started.stdout).strip()[:300]}); set hydra.launcher.mps=false")
        self.env, self.saved = env, {name: os.environ.get(name) for name in env}
        os.environ.update(env)
        atexit.register(self.wait)
        log.info("fork launcher: CUDA MPS control daemon started (pipes in %s)", env[MPS_VARIABLES[0]])

    def stop(self, after: Sequence[Any] = ()) -> None:
        """Restore the environment now; quit the daemon once the processes `after` have exited; idempotent."""
        if self.root is None or self.quitter is not None:
            return
        for name, value in self.saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self.quitter = threading.Thread(target=self._quit, args=(list(after), self.root), name="idlab-mps-quit")
        self.quitter.start()

    def wait(self) -> None:
        """Stop (if no launch did) and wait until the daemon has been told to quit and its folder is gone."""
        self.stop()
        if self.quitter is not None:
            self.quitter.join()

    def _quit(self, after: list[Any], root: Path) -> None:
        for process in after:
            process.join(timeout=60)
        try:
            subprocess.run([self.control], input="quit\n", env={**os.environ, **self.env}, capture_output=True,
                           text=True, timeout=60)
        except (OSError, subprocess.SubprocessError) as err:
            log.warning("fork launcher: stopping the MPS control daemon failed: %s", err)
        shutil.rmtree(root, ignore_errors=True)


def launch(launcher: Any, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[JobReturn]:
    """Run the jobs, at most launcher.n_jobs at a time; results in the order of job_overrides."""
    setup_globals()
    configure_log(launcher.config.hydra.hydra_logging, launcher.config.hydra.verbose)
    Path(str(launcher.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
    log.info("fork launcher: %d jobs, %d at a time", len(job_overrides), launcher.n_jobs)
    for idx, overrides in enumerate(job_overrides):
        log.info("\t#%d : %s", initial_job_idx + idx, " ".join(filter_overrides(overrides)))
    context = multiprocessing.get_context("fork")
    results: list[JobReturn | None] = [None] * len(job_overrides)
    queue = list(enumerate(job_overrides))
    running: dict[Connection, tuple[int, Any]] = {}
    finished: list[Any] = []  # children whose results came back, possibly still exiting
    warm: threading.Thread | None = None
    try:
        while queue or running:
            while queue and len(running) < launcher.n_jobs:
                idx, overrides = queue.pop(0)
                reader, writer = context.Pipe(duplex=False)
                child = context.Process(target=_child, name=f"idlab-job-{initial_job_idx + idx}",
                                        args=(writer, launcher, initial_job_idx + idx, list(overrides)))
                child.start()
                writer.close()  # the child holds the only writer: its exit makes the reader see EOF
                running[reader] = (idx, child)
            if warm is None and not queue:  # every job is forked, so no fork can catch the thread mid-import
                warm = threading.Thread(target=_warm_report, name="idlab-warm-report", daemon=True)
                warm.start()
            for reader in wait(list(running)):
                idx, child = running.pop(reader)
                results[idx] = _collect(reader, child, list(job_overrides[idx]), initial_job_idx + idx)
                finished.append(child)
    except BaseException:  # Ctrl-C or a driver error: take the children down with it
        for _, child in running.values():
            child.terminate()
        for _, child in running.values():
            child.join()
        raise
    finally:
        if warm is not None:
            warm.join()
        if getattr(launcher, "mps_daemon", None) is not None:
            launcher.mps_daemon.stop(after=finished)
    return [r for r in results if r is not None]


def _warm_report() -> None:
    """Import what the sweep's report draws with (matplotlib) while the jobs run and the driver only waits."""
    try:
        from idlab.sweep.report import pyplot

        pyplot()
    except Exception:  # noqa: BLE001 - the report imports it again and raises there
        log.debug("fork launcher: importing matplotlib ahead of the report failed", exc_info=True)


def _child(writer: Connection, launcher: Any, num: int, overrides: list[str]) -> None:
    """In the forked process: compose the job's config, run it through Hydra's run_job, send the JobReturn."""
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)  # GNU OpenMP hangs in a forked child once its parent has used more threads
    try:
        cfg = launcher.hydra_context.config_loader.load_sweep_config(launcher.config, overrides)
        with open_dict(cfg):
            cfg.hydra.job.id = f"{cfg.hydra.job.name}_{num}"
            cfg.hydra.job.num = num
        HydraConfig.instance().set_config(cfg)
        result = run_job(hydra_context=launcher.hydra_context, task_function=launcher.task_function, config=cfg,
                         job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")
    except BaseException as err:  # noqa: BLE001 - composing or setting up the job failed: report it as failed
        result = JobReturn(overrides=overrides, status=JobStatus.FAILED, _return_value=err)
    try:
        writer.send(result)
    except Exception as err:  # noqa: BLE001 - e.g. a return value that does not pickle
        writer.send(JobReturn(overrides=overrides, status=result.status, working_dir=result.working_dir,
                              _return_value=RuntimeError(f"job {num}: its result could not be sent back: {err}")
                              if result.status == JobStatus.FAILED else None))
    finally:
        writer.close()


def _collect(reader: Connection, child: Any, overrides: list[str], num: int) -> JobReturn:
    """The child's JobReturn, or a failed one saying how the child ended when it died before sending."""
    try:
        result = reader.recv()
    except EOFError:
        result = None
    finally:
        reader.close()
    if isinstance(result, JobReturn):
        return result  # the child exits (CUDA teardown) while the driver goes on; multiprocessing reaps it
    child.join()
    code = child.exitcode
    how = f"was killed by signal {-code}" if code is not None and code < 0 else f"exited with code {code}"
    log.error("job %d %s before it finished; the other jobs go on (its run is rerun on the next invocation "
              "unless its record says otherwise)", num, how)
    return JobReturn(overrides=overrides, status=JobStatus.FAILED,
                     _return_value=ChildProcessError(f"job {num} {how} before it finished"))
