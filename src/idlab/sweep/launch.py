"""Composing job configs and running lists of override sets through Hydra's configured launcher."""
from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any, Callable, Sequence

from hydra._internal.callbacks import Callbacks
from hydra._internal.config_loader_impl import ConfigLoaderImpl, get_overrides_dirname
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, OverrideType, ValueType
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
                                   f"{', '.join(available)} (joblib or fork run jobs in parallel on this machine, "
                                   "slurm submits them to a SLURM cluster)")


class HydraSession:
    """A composed master config plus its config loader: builds job configs and launches jobs.

    A sweep's runs mostly differ from each other in plain values (adapt.d=…, seed=…). Composing each through Hydra
    costs ~0.2 s, so `job_config` composes the first run of each *shape* (the same overrides, plain values aside)
    and derives the others from it: a copy with the run's plain values applied by Hydra's own override code and its
    hydra.overrides / override_dirname rewritten. The second run of a shape is composed too and compared with its
    derivation; a shape whose derivation differs is always composed (never trusted untested).
    """

    def __init__(self, config_name: str, overrides: Sequence[str], sweep_dir: Path) -> None:
        self.config_name = config_name
        self.task_overrides = [o for o in overrides if not is_hydra_override(o)]
        hydra_overrides = [o for o in overrides if is_hydra_override(o)]
        # The launcher recomposes every job from the master's hydra overrides plus the job's own overrides.
        hydra_overrides += [f"hydra.sweep.dir={sweep_dir}", "hydra.sweep.subdir=${hydra.job.num}"]
        self.loader = GlobalHydra.instance().config_loader()
        self.master = self.loader.load_configuration(config_name=config_name, overrides=self.task_overrides
                                                     + hydra_overrides, run_mode=RunMode.RUN)
        self.parser = OverridesParser.create()
        self.shapes: dict[tuple, list] = {}  # shape → [template job config or None (derivation failed), verified]
        self.composed = 0  # full compositions (the rest were derived)

    def job_config(self, job_overrides: Sequence[str]) -> DictConfig:
        """The config a job launched with these overrides will receive (hydra node included)."""
        overrides = list(job_overrides)
        parsed = self.parser.parse_overrides(overrides)
        shape = tuple(("value", o.key_or_group) if self._plain(o) else ("line", o.input_line) for o in parsed)
        state = self.shapes.get(shape)
        if state is None:
            cfg = self._compose(overrides)
            self.shapes[shape] = [copy.deepcopy(cfg), False]
            return cfg
        template, verified = state
        if template is None:
            return self._compose(overrides)
        derived = self._derive(template, parsed)
        if verified:
            return derived
        cfg = self._compose(overrides)
        if OmegaConf.to_container(cfg, resolve=False) == OmegaConf.to_container(derived, resolve=False):
            state[1] = True
        else:
            state[0] = None
            log.debug("runs shaped like %s are composed one by one: a derived config differed", overrides)
        return cfg

    def _compose(self, overrides: list[str]) -> DictConfig:
        """One job config through Hydra's composition."""
        self.composed += 1
        cfg = self.loader.load_sweep_config(self.master, overrides)
        with open_dict(cfg):
            cfg.hydra.job.num = 0
            cfg.hydra.job.id = "plan"
        return cfg

    def _plain(self, override: Override) -> bool:
        """A `key=value` override of a scalar config value (no config group, add, delete, sweep, dict or list)."""
        return (override.type == OverrideType.CHANGE and override.value_type == ValueType.ELEMENT
                and override.package is None and not override.is_hydra_override()
                and not isinstance(override.value(), (dict, list)) and "/" not in override.key_or_group
                and not self.loader.repository.group_exists(override.key_or_group.replace(".", "/")))

    def _derive(self, template: DictConfig, parsed: list[Override]) -> DictConfig:
        """The template with these overrides' plain values applied (Hydra's code) and its override records."""
        cfg = copy.deepcopy(template)
        ConfigLoaderImpl._apply_overrides_to_config([o for o in parsed if self._plain(o)], cfg)  # noqa: SLF001
        task = [o for o in parsed if not o.is_hydra_override()]
        job = cfg.hydra.job
        with open_dict(cfg.hydra):
            cfg.hydra.overrides.task = [o.input_line for o in task]
            job.override_dirname = get_overrides_dirname(overrides=task, kv_sep=job.config.override_dirname.kv_sep,
                                                         item_sep=job.config.override_dirname.item_sep,
                                                         exclude_keys=job.config.override_dirname.exclude_keys)
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


