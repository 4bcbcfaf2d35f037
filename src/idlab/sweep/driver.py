"""One sweep invocation: compose, validate, skip finished runs, launch the rest, report."""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from omegaconf import DictConfig

from idlab.sweep.arguments import apply_sweep_overrides, check_mandatory_values, split_sweep_overrides, \
    sweep_directory
from idlab.sweep.guard import check_single_process_jobs, processes_per_job
from idlab.sweep.identity import run_key
from idlab.sweep.launch import HydraSession, check_launcher_choice, is_hydra_override, task_config
from idlab.sweep.plan import BASELINE, PlannedRun, check_base_overrides, point_runs, run_name, \
    tensorboard_overrides, with_keys
from idlab.sweep.records import PLAN_FILE, RUNS_DIR, SweepLock, best_by_key, move_stale_events, next_job_index, \
    resume_folder, scan_runs, tensorboard_owners, write_json_atomic
from idlab.sweep.report import TENSORBOARD_DIR, report, summarize_plan
from idlab.sweep.results import RunResult, collect
from idlab.sweep.search import run_bisect, run_grid
from idlab.sweep.slurm import live_jobs, submitted_jobs, submitted_overrides, wait_for
from idlab.sweep.spec import SweepConfigError, SweepSpec
from idlab.sweep.task import default_task, write_members
from idlab.sweep.validate import build_check

log = logging.getLogger(__name__)

Task = Callable[[DictConfig], Any]
Validate = Callable[[DictConfig], None]


class SweepDriver:
    """Runs planned runs through the launcher, skipping those whose config key already has a result."""

    def __init__(self, session: HydraSession, spec: SweepSpec, sweep_dir: Path, task: Task,
                 header: dict[str, Any] | None = None) -> None:
        self.session, self.spec, self.sweep_dir, self.task = session, spec, sweep_dir, task
        self.header = header or {}
        self.planned: dict[str, PlannedRun] = {}
        self.configs: dict[str, DictConfig] = {}  # composed job config by key (packed runs travel as these)

    def plan(self, search: dict[str, Any]) -> dict[str, Any]:
        """plan.json's content: how the sweep was called, its spec, the search state and every planned run."""
        return {**self.header, "spec": self.spec.to_dict(), "search": search,
                "runs": [r.to_dict() for r in self.planned.values()], "written": time.time()}

    def keyed(self, runs: Sequence[PlannedRun]) -> list[PlannedRun]:
        """The runs with their resolved-config keys (composed exactly as the launcher will)."""
        configs = [self.compose(r) for r in runs]
        keys = [run_key(task_config(cfg)) for cfg in configs]
        self.configs.update(zip(keys, configs))
        return with_keys(runs, keys)

    def compose(self, run: PlannedRun) -> DictConfig:
        """One run's job config; a composition error names the run and the sweep key to fix."""
        try:
            return self.session.job_config(run.overrides)
        except HydraException as err:
            where = "sweep.baseline_overrides (the baseline is this config with adapt=full)" \
                if run.role == BASELINE else "sweep.param / sweep.overrides"
            raise SweepConfigError(f"the {run.role} run {' '.join(run.overrides)} does not compose: {err}; "
                                   f"check {where}") from err

    def execute(self, runs: Sequence[PlannedRun], dry_run: bool = False) -> list[PlannedRun]:
        """Launch the runs that have no successful result yet, except those still queued or running on SLURM
        from an earlier invocation (waited for instead); a killed run continues in its folder from its
        last.ckpt. Returns the keyed runs."""
        started, composed = time.perf_counter(), self.session.composed
        keyed = self.keyed(runs)
        log.info("composed %d run configs in %.1f s (%d through Hydra, the rest derived from those)", len(keyed),
                 time.perf_counter() - started, self.session.composed - composed)
        for run in keyed:
            self.planned.setdefault(run.key, run)
        runs_dir = self.sweep_dir / RUNS_DIR
        existing = best_by_key(scan_runs(runs_dir), self.spec.metric)
        todo = [r for r in keyed if not _has_result(existing.get(r.key, []), self.spec.metric)]
        queued = self.still_queued({r.key for r in todo})
        launch = [r for r in todo if r.key not in queued.values()]
        resume = {r.key: resume_folder(existing.get(r.key, [])) for r in launch}
        log.info("%d runs planned, %d already done, %d to launch (%d continue from their last.ckpt), %d still "
                 "queued or running on SLURM from an earlier sweep.py (waited for, not submitted again)", len(keyed),
                 len(keyed) - len(todo), len(launch), sum(f is not None for f in resume.values()), len(queued))
        if todo and not dry_run:  # plan.json first: a sweep killed mid-launch can still be --report'ed
            write_json_atomic(self.sweep_dir / PLAN_FILE, self.plan({"kind": self.spec.search, "status": "running"}))
            fresh = [r for r in launch if resume[r.key] is None]
            owners = tensorboard_owners(runs_dir)  # a resumed run keeps its events: it continues its own curves
            for name in (run_name(r, self.spec.param) for r in fresh):
                move_stale_events(self.sweep_dir / TENSORBOARD_DIR / name, owners.get(name))
            first = next_job_index(runs_dir)
            jobs = self.pack(fresh, first) + [(*self.launch_overrides(r), *_in_folder(resume[r.key]))
                                              for r in launch if resume[r.key] is not None]
            self.session.launch(jobs, first, self.task)
            wait_for({job: f"run {key}" for job, key in queued.items()})
        return keyed

    def launch_overrides(self, run: PlannedRun) -> tuple[str, ...]:
        """The run's overrides plus its tensorboard place, <sweep>/tensorboard/<run name> (logger.* is not part of
        the run's key, so the name changes nothing the sweep matches runs by)."""
        loggers = self.configs[run.key].get("logger")
        return (*run.overrides, *tensorboard_overrides(run_name(run, self.spec.param), loggers,
                                                       self.sweep_dir / TENSORBOARD_DIR))

    def pack(self, todo: Sequence[PlannedRun], first: int) -> list[tuple[str, ...]]:
        """Jobs of `sweep.runs_per_job` consecutive runs (same value, other seeds): each job's first run is
        launched, the others travel in its folder's members file (composed with their own tensorboard place) and
        get folders after every launched job's. (A run that continues a killed attempt is launched on its own,
        into its folder.)"""
        size = self.spec.runs_per_job
        groups = [todo[i: i + size] for i in range(0, len(todo), size)]
        num = first + len(groups)
        for index, group in enumerate(groups):
            members = []
            for run in group[1:]:
                members.append((num, self.session.job_config(self.launch_overrides(run))))
                num += 1
            if members:
                write_members(self.sweep_dir / RUNS_DIR / str(first + index), members, self.spec.side_by_side)
        return [self.launch_overrides(group[0]) for group in groups]

    def still_queued(self, keys: set[str]) -> dict[str, str]:
        """SLURM job id → run key, for jobs submitted into this sweep (by any invocation) that SLURM still has
        pending or running and that compute one of `keys`."""
        roots = {self.sweep_dir / RUNS_DIR / ".submitit"}
        folder = self.session.master.hydra.launcher.get("submitit_folder")
        if folder:
            from submitit.core.utils import JobPaths

            roots.add(JobPaths.get_first_id_independent_folder(str(folder)))
        submitted = submitted_jobs(roots) if keys else {}
        queued = {}
        for job_id in live_jobs(submitted):
            key = run_key(task_config(self.session.job_config(submitted_overrides(submitted[job_id]))))
            if key in keys:
                queued[job_id] = key
        return queued

    def results(self) -> list[RunResult]:
        """Every planned run joined with what is on disk."""
        return collect(list(self.planned.values()), scan_runs(self.sweep_dir / RUNS_DIR), self.spec.metric)


def run_sweep(config_dir: Path, args: Sequence[str], config_name: str = "train", task: Task = default_task,
              validate: Validate | None = build_check, dry_run: bool = False) -> dict[str, Any]:
    """`python sweep.py ARGS`: run or resume the sweep and return its summary."""
    sweep_args, hydra_args = split_sweep_overrides(args)
    with initialize_config_dir(config_dir=str(Path(config_dir).resolve()), version_base="1.3", job_name="train"):
        check_launcher_choice(hydra_args, config_name)
        probe = _compose(config_name, hydra_args)
        check_mandatory_values(probe)
        spec = SweepSpec.from_dict(apply_sweep_overrides(probe.get("sweep"), sweep_args))
        base = [a for a in hydra_args if not is_hydra_override(a)]
        check_base_overrides(spec, base)
        sweep_dir = sweep_directory(spec, probe)
        with SweepLock(sweep_dir):
            session = HydraSession(config_name, hydra_args, sweep_dir / RUNS_DIR)
            check_single_process_jobs(session.master)
            if spec.side_by_side > 1 and processes_per_job(session.master.get("trainer")) > 1:
                raise SweepConfigError(f"sweep.side_by_side={spec.side_by_side} trains runs in threads of one "
                                       "process; a DDP run (several processes per run) cannot share one: use "
                                       "sweep.side_by_side=1")
            driver = SweepDriver(session, spec, sweep_dir, task, {"config_name": config_name, "args": list(args)})
            if validate is not None:
                started = time.perf_counter()
                _validate_extremes(driver, spec, base, validate)
                log.info("checked the smallest and largest value in %.1f s", time.perf_counter() - started)
            search = (run_grid if spec.search == "grid" else run_bisect)(driver, spec, base, dry_run)
            plan = driver.plan(search)
            if dry_run:
                return summarize_plan(sweep_dir, plan)[0]
            write_json_atomic(sweep_dir / PLAN_FILE, plan)
            return report(sweep_dir)


def _validate_extremes(driver: SweepDriver, spec: SweepSpec, base: list[str], validate: Validate) -> None:
    """Build the model at the smallest and largest value once, so an out-of-range value fails before launch."""
    for value in sorted({min(spec.values), max(spec.values)}):
        run = point_runs(spec, base, [value])[0]
        cfg = driver.compose(run)
        HydraConfig.instance().set_config(cfg)
        try:
            validate(task_config(cfg))
        except Exception as err:  # noqa: BLE001 - re-raised with the swept key named
            raise SweepConfigError(f"sweep.values: {spec.param}={value:g} does not work for this model: "
                                   f"{type(err).__name__}: {err}") from err


def _compose(config_name: str, overrides: list[str]) -> DictConfig:
    """The master config with the hydra node, with composition errors turned into sweep errors."""
    try:
        return compose(config_name=config_name, overrides=overrides, return_hydra_config=True)
    except HydraException as err:
        raise SweepConfigError(f"cannot compose {config_name} with {overrides}: {err}") from err


def _in_folder(run_dir: Path | None) -> tuple[str, ...]:
    """The override that launches a job into an existing run folder (to continue it there), if any."""
    return () if run_dir is None else (f"hydra.sweep.subdir={run_dir.name}",)


def _has_result(group: list, metric: str) -> bool:
    """Whether some run folder with this key has a result to count (a diverged run is one)."""
    return bool(group) and group[0].counted(metric).value is not None
