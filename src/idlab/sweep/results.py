"""Planned runs joined with what is on disk, and the summary numbers computed from them."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from idlab.sweep.analysis import IntrinsicDim, intrinsic_dimension, point_stats
from idlab.sweep.plan import BASELINE, POINT, PlannedRun
from idlab.sweep.records import RunRecord, best_by_key
from idlab.sweep.spec import SweepSpec


@dataclass(frozen=True)
class RunResult:
    """A planned run and its outcome: done (with the metric), failed, or pending (never launched)."""

    run: PlannedRun
    status: str
    metric: float | None
    run_dir: Path | None
    error: str | None
    attempts: int


def collect(runs: Sequence[PlannedRun], records: list[RunRecord], metric: str) -> list[RunResult]:
    """Match every planned run to its newest successful folder (by config key), else its latest failure."""
    by_key = best_by_key(records, metric)
    out = []
    for run in runs:
        group = by_key.get(run.key, [])
        if not group:
            out.append(RunResult(run, "pending", None, None, None, 0))
            continue
        best = group[0]
        value = best.metric(metric) if best.status == "done" else None
        if value is None:
            error = best.error if best.status != "done" else (
                f"metrics.json has no key {metric!r}; it has {sorted(best.metrics)} (set sweep.metric)")
            out.append(RunResult(run, "failed", None, best.run_dir, error, len(group)))
        else:
            out.append(RunResult(run, "done", value, best.run_dir, None, len(group)))
    return out


def point_table(results: Sequence[RunResult]) -> dict[float, list[float]]:
    """value → metric of every finished seed."""
    table: dict[float, list[float]] = {}
    for r in results:
        if r.run.role == POINT:
            table.setdefault(float(r.run.value), [])
            if r.status == "done":
                table[float(r.run.value)].append(float(r.metric))
    return table


def baseline_samples(spec: SweepSpec, results: Sequence[RunResult]) -> list[float]:
    """Per-seed baseline metrics (measured), or the given baseline number."""
    if not spec.baseline_is_measured:
        return [float(spec.baseline)]
    return [float(r.metric) for r in results if r.run.role == BASELINE and r.status == "done"]


def seed_means(results: Sequence[RunResult]) -> dict[float, float]:
    """value → seed-mean, for values with at least one finished seed."""
    return {s.value: s.mean for s in point_stats(point_table(results))}


def summarize(spec: SweepSpec, results: Sequence[RunResult], search: dict[str, Any]) -> dict[str, Any]:
    """summary.json: baseline, per-value statistics, d_int at the threshold and at 1.0, failed runs."""
    base = baseline_samples(spec, results)
    table = point_table(results)
    stats = point_stats(table)
    summary: dict[str, Any] = {
        "param": spec.param, "metric": spec.metric, "threshold": spec.threshold, "search": search,
        "baseline": _baseline_block(spec, base, results),
        "points": [{"value": s.value, "n": s.n, "mean": s.mean, "std": s.std,
                    "seeds": {str(r.run.seed): r.metric for r in results
                              if r.run.role == POINT and r.status == "done" and float(r.run.value) == s.value}}
                   for s in stats],
        "runs": {status: sum(r.status == status for r in results) for status in ("done", "failed", "pending")},
        "failed": [{"role": r.run.role, "value": r.run.value, "seed": r.run.seed, "key": r.run.key,
                    "run_dir": str(r.run_dir) if r.run_dir else None, "error": r.error, "attempts": r.attempts}
                   for r in results if r.status == "failed"],
        "spec": spec.to_dict(),
    }
    summary["runs"]["planned"] = len(results)
    for name, fraction in ((f"d_int{_percent(spec.threshold)}", spec.threshold), ("d_int100", 1.0)):
        summary[name] = _dim_block(table, base, fraction, spec, stats)
    return summary


def _baseline_block(spec: SweepSpec, base: list[float], results: Sequence[RunResult]) -> dict[str, Any]:
    """How the baseline was obtained and its value."""
    if not spec.baseline_is_measured:
        return {"kind": "given", "value": float(spec.baseline), "n": 0, "std": None, "seeds": {}}
    seeds = {str(r.run.seed): r.metric for r in results if r.run.role == BASELINE and r.status == "done"}
    mean = sum(base) / len(base) if base else None
    std = (math.sqrt(sum((b - mean) ** 2 for b in base) / (len(base) - 1)) if len(base) > 1 else 0.0) if base else None
    return {"kind": "full", "value": mean, "n": len(base), "std": std, "seeds": seeds,
            "overrides": ["adapt=full", *spec.baseline_overrides]}


def _dim_block(table: dict[float, list[float]], base: list[float], fraction: float, spec: SweepSpec,
               stats: list) -> dict[str, Any]:
    """One d_int entry of summary.json, with a human-readable note."""
    if not base:
        return {"value": None, "reached": False, "fraction": fraction, "target": None, "ci95": [None, None],
                "note": "no baseline yet: the baseline runs have not finished (see `runs` and `failed`)"}
    dim: IntrinsicDim = intrinsic_dimension(table, base, fraction, n_boot=spec.bootstrap)
    swept = [s.value for s in stats]
    if dim.reached:
        note = f"first {spec.param} whose seed-mean {spec.metric} reaches {fraction:g} x baseline"
    elif swept:
        note = f"never reached: best seed-mean {max(s.mean for s in stats):.4g} < target {dim.target:.4g} " \
               f"up to {spec.param}={max(swept):g}; extend sweep.values upwards"
    else:
        note = "no finished runs yet"
    return {"value": dim.value, "reached": dim.reached, "fraction": fraction, "target": dim.target,
            "ci95": [dim.ci_low, dim.ci_high], "bootstrap_mean": dim.boot_mean, "bootstrap_std": dim.boot_std,
            "reached_fraction": dim.reached_fraction, "bootstrap_resamples": spec.bootstrap, "note": note}


def _percent(fraction: float) -> str:
    """0.9 → '90', 0.95 → '95', 0.925 → '92.5'."""
    return f"{fraction * 100:g}"
