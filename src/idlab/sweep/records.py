"""The sweep folder on disk: run records, metrics, plan.json, and a lock against concurrent drivers."""
from __future__ import annotations

import fcntl
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from idlab.sweep.spec import SweepConfigError

RECORD_FILE = "sweep_run.json"
METRICS_FILE = "metrics.json"
PLAN_FILE = "plan.json"
RUNS_DIR = "runs"
LOCK_FILE = ".sweep.lock"
LAST_CHECKPOINT = Path("checkpoints") / "last.ckpt"


@dataclass(frozen=True)
class RunRecord:
    """One run folder: its identity, outcome and metrics."""

    run_dir: Path
    key: str
    status: str  # "done" | "failed" (includes killed and never-finished runs)
    metrics: dict[str, float]
    error: str | None
    started: float
    interrupted: bool = False  # the run never wrote an end status: killed, or still running somewhere

    def metric(self, name: str) -> float | None:
        """The named metric of a finished run, None if missing."""
        value = self.metrics.get(name)
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    @property
    def diverged(self) -> bool:
        """The run's loss or weights went NaN/inf (metrics.json `diverged: true`): a result, not a failure."""
        return self.status == "done" and self.metrics.get("diverged") is True

    def counted(self, name: str) -> Counted:
        """The value a sweep counts for this run: its finite metric; for a diverged run without one, chance
        (`chance/acc`, accuracy metrics only); None with the reason when there is nothing to count."""
        if self.status != "done":
            return Counted(None, False, None, self.error)
        value = self.metric(name)
        if value is not None and math.isfinite(value):
            return Counted(value, self.diverged, "last good state" if self.diverged else "measured", None)
        step = self.metrics.get("diverged_step")
        chance = self.metric("chance/acc")
        if self.diverged and name.endswith("acc") and chance is not None:
            return Counted(chance, True, "chance", None)
        if self.diverged:
            return Counted(None, True, None, f"diverged at step {step} with no finite {name!r} to count "
                                             "(chance level is only known for accuracy metrics)")
        if value is not None:
            return Counted(None, False, None, f"metrics.json has {name} = {value} without being marked diverged")
        return Counted(None, False, None, f"metrics.json has no key {name!r}; it has "
                                          f"{sorted(k for k in self.metrics if k != 'code')} (set sweep.metric)")


@dataclass(frozen=True)
class Counted:
    """What one run contributes to a sweep metric."""

    value: float | None  # None: nothing to count (the run failed, or its metrics.json lacks the metric)
    diverged: bool
    source: str | None  # "measured" | "last good state" (diverged, its last good checkpoint/epoch) | "chance"
    error: str | None


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write JSON via a temporary file and os.replace, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=_json_default) + "\n")
    os.replace(tmp, path)


def read_record(run_dir: Path) -> RunRecord | None:
    """The record of one run folder, or None when the folder holds no sweep run."""
    try:
        record = json.loads((run_dir / RECORD_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    metrics = _read_metrics(run_dir / METRICS_FILE)
    status = "done" if metrics is not None and record.get("status") != "failed" else "failed"
    error = record.get("error")
    if status == "failed" and error is None:
        error = ("killed or interrupted before writing metrics.json" if record.get("status") == "running"
                 else "finished without writing metrics.json")
    return RunRecord(run_dir, str(record.get("key", "")), status, metrics or {}, error,
                     float(record.get("started", 0.0)), record.get("status") == "running" and metrics is None)


def resume_folder(group: list[RunRecord]) -> Path | None:
    """The folder to continue a run in: its newest attempt's, when that attempt was interrupted after writing
    checkpoints/last.ckpt (None: start afresh in a new folder; a run that failed with an error starts afresh)."""
    newest = max(group, key=lambda r: r.started, default=None)
    if newest is not None and newest.interrupted and (newest.run_dir / LAST_CHECKPOINT).is_file():
        return newest.run_dir
    return None


def scan_runs(runs_dir: Path) -> list[RunRecord]:
    """All run records under runs/, oldest first."""
    if not runs_dir.is_dir():
        return []
    records = [read_record(d) for d in runs_dir.iterdir() if d.is_dir()]
    return sorted((r for r in records if r is not None), key=lambda r: (r.started, r.run_dir.name))


def next_job_index(runs_dir: Path) -> int:
    """One more than the highest numbered run folder, so new runs never reuse a folder."""
    numbers = [int(d.name) for d in runs_dir.iterdir() if d.name.isdigit()] if runs_dir.is_dir() else []
    return max(numbers, default=-1) + 1


def best_by_key(records: list[RunRecord], metric: str) -> dict[str, list[RunRecord]]:
    """Records grouped by key; within a key, successful runs with the metric first, newest first."""
    grouped: dict[str, list[RunRecord]] = {}
    for record in records:
        grouped.setdefault(record.key, []).append(record)
    for key, group in grouped.items():
        group.sort(key=lambda r: (r.counted(metric).value is not None, r.started), reverse=True)
    return grouped


class SweepLock:
    """An exclusive lock on the sweep folder, so two drivers never number runs concurrently."""

    def __init__(self, sweep_dir: Path) -> None:
        self.path = sweep_dir / LOCK_FILE
        self._fd: int | None = None

    def __enter__(self) -> "SweepLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            self._fd = None
            raise SweepConfigError(f"another sweep.py is running on {self.path.parent}; wait for it to finish "
                                   "or give this sweep its own folder with sweep.dir=...") from None
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def tensorboard_owners(runs_dir: Path) -> dict[str, Path]:
    """Run name → the newest run folder whose config logged to <sweep>/tensorboard/<run name> (the TensorBoardLogger
    name/version that sweep.py sets, as recorded in the folder's .hydra/config.yaml)."""
    folders = sorted((d for d in runs_dir.iterdir() if d.name.isdigit()), key=lambda d: int(d.name)) \
        if runs_dir.is_dir() else []
    owners: dict[str, Path] = {}
    for run_dir in folders:
        try:
            loggers = (yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text()) or {}).get("logger") or {}
        except (OSError, yaml.YAMLError, AttributeError):
            continue
        for node in loggers.values() if isinstance(loggers, dict) else ():
            if isinstance(node, dict) and str(node.get("_target_", "")).endswith("TensorBoardLogger") \
                    and node.get("name") and node.get("version"):
                owners[f"{node['name']}/{node['version']}"] = run_dir
    return owners


def move_stale_events(log_dir: Path, owner: Path | None) -> None:
    """Before a run is launched under a tensorboard name that already holds events (a failed attempt, or a run of
    an earlier config), move them into the run folder that wrote them (as its tensorboard/): the name then shows
    the new run, and nothing is lost."""
    if log_dir.is_dir() and owner is not None and not (owner / "tensorboard").exists():
        os.replace(log_dir, owner / "tensorboard")


def _read_metrics(path: Path) -> dict[str, float] | None:
    """metrics.json as a dict, None when absent or unreadable."""
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _json_default(obj: Any) -> Any:
    """Paths and numpy scalars in JSON."""
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")

