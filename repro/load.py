"""Reading reproduction folders: sweeps (re-summarised from their runs), training curves, id.csv, repro.json."""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class RunPoint:
    """One finished run of a sweep: its role, swept value, seed, metric and metrics.json."""

    role: str
    value: float | None
    seed: int
    metric: float
    metrics: dict[str, Any]


@dataclass(frozen=True)
class Sweep:
    """A sweep folder's summary plus its finished runs."""

    folder: Path
    summary: dict[str, Any]
    runs: list[RunPoint]

    def dim(self, name: str = "d_int90") -> dict[str, Any]:
        """A d_int block of the summary (value None: not reached)."""
        key = name if name in self.summary else next((k for k in self.summary if k.startswith("d_int")
                                                      and k != "d_int100"), name)
        return self.summary.get(key, {"value": None, "ci95": [None, None], "note": "missing"})

    def curve(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Swept values, seed-means and stds of the finished points."""
        points = self.summary["points"]
        return (np.array([p["value"] for p in points], dtype=float), np.array([p["mean"] for p in points]),
                np.array([p["std"] for p in points]))

    def per_value(self, key: str) -> dict[float, float]:
        """Swept value → a metrics.json entry (e.g. params/trainable) of its runs (they agree across seeds)."""
        return {r.value: float(r.metrics[key]) for r in self.runs
                if r.role == "point" and r.value is not None and isinstance(r.metrics.get(key), (int, float))}

    def baseline_metric(self, key: str) -> float | None:
        """A metrics.json entry of the first finished baseline run (e.g. params/total)."""
        values = [r.metrics.get(key) for r in self.runs if r.role == "baseline"]
        return next((float(v) for v in values if isinstance(v, (int, float))), None)

    def seeds(self) -> list[tuple[float, float]]:
        """(value, metric) of every finished point run."""
        return [(r.value, r.metric) for r in self.runs if r.role == "point" and r.value is not None]

    @property
    def baseline(self) -> float | None:
        """The baseline value (seed-mean of full training, or the given number)."""
        return self.summary["baseline"]["value"]


def load_sweep(folder: Path) -> Sweep | None:
    """The sweep in `folder`, re-summarised from plan.json and its runs (summary.json if no plan); None if absent."""
    folder = Path(folder)
    if (folder / "plan.json").is_file():
        from idlab.sweep.report import read_plan, summarize_plan

        summary, results = summarize_plan(folder, read_plan(folder))
        runs = [RunPoint(r.run.role, r.run.value, r.run.seed, float(r.metric),
                         (read_json(r.run_dir / "metrics.json") or {}) if r.run_dir else {})
                for r in results if r.status == "done"]
        return Sweep(folder, summary, runs)
    if (folder / "summary.json").is_file():
        return Sweep(folder, json.loads((folder / "summary.json").read_text()), [])
    return None


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON file as a dict, None when missing or unreadable."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def curves(run_dir: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """tag → (steps, values) from scalars.csv, or from the tensorboard event files when there is no CSV."""
    run_dir = Path(run_dir)
    rows: list[tuple[int, str, float]] = []
    if (run_dir / "scalars.csv").is_file():
        with open(run_dir / "scalars.csv", newline="") as handle:
            rows = [(int(r["step"]), r["tag"], float(r["value"])) for r in csv.DictReader(handle)]
    elif (run_dir / "tensorboard").is_dir():
        from repro.pack import event_scalars

        rows = event_scalars(run_dir)
    out: dict[str, tuple[list[int], list[float]]] = {}
    for step, tag, value in rows:
        out.setdefault(tag, ([], []))
        out[tag][0].append(step)
        out[tag][1].append(value)
    return {tag: (np.asarray(s), np.asarray(v)) for tag, (s, v) in out.items()}


def id_table(run_dir: Path) -> list[dict[str, Any]]:
    """Rows of the run's id.csv (step, split, layer, estimator, value, std), numbers parsed."""
    path = Path(run_dir) / "id.csv"
    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        return [{"step": int(r["step"]), "split": r["split"], "layer": r["layer"], "estimator": r["estimator"],
                 "value": float(r["value"]), "std": float(r["std"]) if r.get("std") else None}
                for r in csv.DictReader(handle)]


def llid(run_dir: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Steps and TwoNN ID of the last tracked layer (Brown et al.'s LLID) on `split`, from id.csv."""
    rows = [r for r in id_table(run_dir) if r["split"] == split and r["estimator"] == "twonn"]
    if not rows:
        return np.array([]), np.array([])
    layers = list(dict.fromkeys(r["layer"] for r in rows))  # rows are written in depth order
    last = [r for r in rows if r["layer"] == layers[-1]]
    return np.array([r["step"] for r in last]), np.array([r["value"] for r in last])


def first_step(steps: np.ndarray, values: np.ndarray, level: float) -> int | None:
    """The first step whose value reaches `level` (None if never)."""
    hits = np.nonzero(values >= level)[0]
    return int(steps[hits[0]]) if hits.size else None


def seed_dirs(folder: Path) -> list[Path]:
    """seed<k> run folders under `folder`, by seed."""
    found = [d for d in Path(folder).glob("seed*") if d.is_dir() and d.name[4:].isdigit()]
    return sorted(found, key=lambda d: int(d.name[4:]))
