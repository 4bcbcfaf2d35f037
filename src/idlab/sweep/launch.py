"""Composing job configs and running lists of override sets through Hydra's configured launcher."""
from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any, Callable, Sequence

from hydra._internal.callbacks import Callbacks
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn
from hydra.types import HydraContext, RunMode
from omegaconf import DictConfig, OmegaConf, open_dict

from idlab.sweep.spec import SweepConfigError
from idlab.sweep.task import RecordedTask

log = logging.getLogger(__name__)

LAUNCHER_GROUP = "hydra/launcher"


def check_launcher_choice(overrides: Sequence[str], config_name: str) -> None:
    """Fail early, with the available options, when hydra/launcher names a config that does not exist."""
    loader = GlobalHydra.instance().config_loader()
    available = sorted(loader.get_group_options(LAUNCHER_GROUP))
    for override in OverridesParser.create().parse_overrides(list(overrides)):
        if override.key_or_group == LAUNCHER_GROUP and override.value() not in available:
            raise SweepConfigError(f"unknown launcher hydra/launcher={override.value()}; available: "
                                   f"{', '.join(available)} (joblib runs jobs in parallel on this machine, "
                                   "slurm submits them to a SLURM cluster)")


class HydraSession:
    """A composed master config plus its config loader: builds job configs and launches jobs."""

    def __init__(self, config_name: str, overrides: Sequence[str], sweep_dir: Path) -> None:
        self.config_name = config_name
        self.task_overrides = [o for o in overrides if not is_hydra_override(o)]
        hydra_overrides = [o for o in overrides if is_hydra_override(o)]
        # The launcher recomposes every job from the master's hydra overrides plus the job's own overrides.
        hydra_overrides += [f"hydra.sweep.dir={sweep_dir}", "hydra.sweep.subdir=${hydra.job.num}"]
        self.loader = GlobalHydra.instance().config_loader()
        self.master = self.loader.load_configuration(config_name=config_name, overrides=self.task_overrides
                                                     + hydra_overrides, run_mode=RunMode.RUN)

    def job_config(self, job_overrides: Sequence[str]) -> DictConfig:
        """The config a job launched with these overrides will receive (hydra node included)."""
        cfg = self.loader.load_sweep_config(self.master, list(job_overrides))
        with open_dict(cfg):
            cfg.hydra.job.num = 0
            cfg.hydra.job.id = "plan"
        return cfg

    def launch(self, job_overrides: Sequence[Sequence[str]], first_index: int,
               task_function: Callable[[DictConfig], Any]) -> list[JobReturn | None]:
        """Run the jobs through the configured launcher; a launcher crash is logged, not raised."""
        if not job_overrides:
            return []
        launcher = Plugins.instance().instantiate_launcher(
            hydra_context=HydraContext(config_loader=self.loader, callbacks=Callbacks(self.master)),
            task_function=RecordedTask(task_function), config=self.master)
        try:
            return list(launcher.launch([list(o) for o in job_overrides], initial_job_idx=first_index))
        except Exception as err:  # noqa: BLE001 - e.g. a submitit job killed; results are read from disk
            log.error("launcher %s stopped early: %s: %s; finished runs are kept and the rest is rerun "
                      "on the next invocation", type(launcher).__name__, type(err).__name__, err)
            return [None] * len(job_overrides)


def is_hydra_override(override: str) -> bool:
    """True for overrides of the hydra node or hydra/ config groups."""
    return override.lstrip("~+").startswith(("hydra.", "hydra/", "hydra="))


def task_config(cfg: DictConfig) -> DictConfig:
    """A copy of a job config as the task function receives it (no hydra node)."""
    task_cfg = copy.deepcopy(cfg)
    OmegaConf.set_struct(task_cfg, False)
    task_cfg.pop("hydra", None)
    return task_cfg


