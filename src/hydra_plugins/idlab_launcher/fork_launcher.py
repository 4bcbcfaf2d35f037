"""`hydra/launcher=fork`: idlab's local launcher, jobs in processes forked from the driver (Linux).

Hydra finds launchers in the `hydra_plugins` namespace; the work is in `idlab.sweep.fork`. Hydra imports this
module whenever it scans its plugins (every `train.py` and `sweep.py` start), so it imports nothing heavy, and
it executes it before registering it in sys.modules, so there is no `from __future__ import annotations` here
(dataclasses would look the module up).
"""
from dataclasses import dataclass, field
from typing import Any, List, Optional, Sequence

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


PRELOAD = ("idlab.run", "torch.utils.tensorboard", "idlab.adapt.subspace.fastfood_triton")


@dataclass
class ForkLauncherConf:
    _target_: str = "hydra_plugins.idlab_launcher.fork_launcher.ForkLauncher"
    # processes at a time, each running one job and exiting; -1: one per CPU core
    n_jobs: int = -1
    # imported by the driver before the first fork, so no job imports them again: the training stack, what the
    # tensorboard logger imports at its first use, the Fastfood Triton kernels (Triton itself)
    preload: List[str] = field(default_factory=lambda: list(PRELOAD))
    # a private CUDA MPS daemon for the launch, so the jobs' kernels share the GPU at once instead of by turns
    mps: bool = False


ConfigStore.instance().store(group="hydra/launcher", name="fork", node=ForkLauncherConf, provider="idlab")


class ForkLauncher(Launcher):
    """Runs each job in a fresh process forked from the driver, at most `n_jobs` at a time. The children inherit
    the driver's imports (torch, Lightning, idlab: `preload`), so a job starts in milliseconds instead of
    re-importing them; CUDA is initialised by each child, never by the driver. A child that dies (a signal, an
    out-of-memory kill, `os._exit`) fails its own job only."""

    def __init__(self, n_jobs: int = -1, preload: Sequence[str] = PRELOAD, mps: bool = False) -> None:
        self.n_jobs, self.mps = n_jobs, mps
        self.preload = list(preload)
        self.mps_daemon: Any = None
        self.config: Optional[DictConfig] = None
        self.task_function: Optional[TaskFunction] = None
        self.hydra_context: Optional[HydraContext] = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from idlab.sweep.fork import MpsDaemon, check_fork_settings, preload

        self.n_jobs = check_fork_settings(self.n_jobs, self.mps)
        preload(self.preload)
        if self.mps:
            self.mps_daemon = MpsDaemon()
            self.mps_daemon.start()
        self.config, self.task_function, self.hydra_context = config, task_function, hydra_context

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from idlab.sweep.fork import launch

        return launch(self, job_overrides, initial_job_idx)

    def __repr__(self) -> str:
        return f"ForkLauncher(n_jobs={self.n_jobs}, mps={self.mps})"
