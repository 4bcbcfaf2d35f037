"""The sweep folder on disk: run records, metrics, plan.json, and a lock against concurrent drivers."""
from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
        return float(value) if isinstance(value, (int, float)) else None


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
        group.sort(key=lambda r: (r.status == "done" and r.metric(metric) is not None, r.started), reverse=True)
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

