"""Planned runs joined with what is on disk, and the summary numbers computed from them.

A diverged run (loss or weights NaN/inf) is a result: it counts with its last good value, or chance. A run that
crashed, was killed or never ran is missing: it is never averaged, its value is reported as incomplete, and a
d_int that such a seed could change is "undetermined".
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from idlab.sweep.analysis import IntrinsicDim, coarse_note, intrinsic_dimension, point_stats
from idlab.sweep.identity import flat_config
from idlab.sweep.plan import BASELINE, POINT, PlannedRun
from idlab.sweep.records import RunRecord, best_by_key
from idlab.sweep.spec import SweepSpec

# What each seed key of idlab's configs draws (used to describe the keys found to vary between seeds).
SEED_ROLES = {
    "seed": "model initialisation (θ0 unless adapt.init_from) and every other draw seeded globally",
    "adapt.seed": "the random projection P",
    "data.seed": "batch order and augmentation",
    "data.split_seed": "the train/val/test split",
    "data.pixel_seed": "the pixel permutation",
    "data.label_seed": "the shuffled labels",
    "callbacks.activation_id.seed": "the activation-ID probe points",
}


@dataclass(frozen=True)
class RunResult:
    """A planned run and its outcome: done (with the counted metric), failed, or pending (never launched)."""

    run: PlannedRun
    status: str
    metric: float | None
    run_dir: Path | None
    error: str | None
    attempts: int
    diverged: bool = False
    source: str | None = None  # "measured" | "last good state" | "chance" (see RunRecord.counted)
    diverged_step: float | None = None
    code: dict[str, Any] | None = None


def collect(runs: Sequence[PlannedRun], records: list[RunRecord], metric: str) -> list[RunResult]:
    """Match every planned run to its newest folder with a result (by config key), else its latest failure."""
    by_key = best_by_key(records, metric)
    out = []
    for run in runs:
        group = by_key.get(run.key, [])
        if not group:
            out.append(RunResult(run, "pending", None, None, None, 0))
            continue
        best = group[0]
        counted = best.counted(metric)
        if counted.value is None:
            out.append(RunResult(run, "failed", None, best.run_dir, counted.error, len(group), counted.diverged))
        else:
            code = best.metrics.get("code")
            out.append(RunResult(run, "done", counted.value, best.run_dir, None, len(group), counted.diverged,
                                 counted.source, best.metric("diverged_step"), code if isinstance(code, dict) else None))
    return out


def point_table(results: Sequence[RunResult], seeds: Sequence[int]) -> dict[float, list[float]]:
    """value → the counted metric per seed, in `seeds` order (NaN where the seed has no result)."""
    order = {s: i for i, s in enumerate(seeds)}
    table: dict[float, list[float]] = {}
    for r in results:
        if r.run.role == POINT and r.run.seed in order:
            row = table.setdefault(float(r.run.value), [math.nan] * len(seeds))
            if r.status == "done":
                row[order[r.run.seed]] = float(r.metric)
    return table


def baseline_samples(spec: SweepSpec, results: Sequence[RunResult]) -> list[float]:
    """Per-seed baseline metrics that exist (measured), or the given baseline number."""
    if not spec.baseline_is_measured:
        return [float(spec.baseline)]
    return [float(r.metric) for r in results if r.run.role == BASELINE and r.status == "done"]


def baseline_row(spec: SweepSpec, results: Sequence[RunResult]) -> float | list[float]:
    """The baseline for the paired analysis: the given number, or one entry per seed in spec order (NaN: missing)."""
    if not spec.baseline_is_measured:
        return float(spec.baseline)
    done = {r.run.seed: float(r.metric) for r in results if r.run.role == BASELINE and r.status == "done"}
    return [done.get(s, math.nan) for s in spec.seeds]


def seed_means(results: Sequence[RunResult], seeds: Sequence[int]) -> dict[float, float]:
    """value → seed-mean, for values where every seed has a result (diverged runs count; missing ones never)."""
    table = point_table(results, seeds)
    return {s.value: s.mean for s in point_stats(table) if s.n == len(seeds)}


def metric_bounds(metric: str, table: dict[float, list[float]], base: float | list[float]) -> tuple[float, float]:
    """Lowest and highest value a missing seed could take: [0, 1] for accuracies, else the range seen."""
    if metric.endswith("acc"):
        return 0.0, 1.0
    seen = [v for row in table.values() for v in row if math.isfinite(v)]
    seen += [v for v in ([base] if isinstance(base, float) else base) if math.isfinite(v)]
    return (min(seen), max(seen)) if seen else (0.0, 1.0)


def summarize(spec: SweepSpec, results: Sequence[RunResult], search: dict[str, Any]) -> dict[str, Any]:
    """summary.json: baseline, per-value statistics, d_int at the threshold and at 1.0, diverged, failed and
    incomplete runs, what randomness the seeds varied and which code versions the runs came from."""
    seeds = list(spec.seeds)
    table = point_table(results, seeds)
    base = baseline_row(spec, results)
    stats = point_stats(table)
    by_value = {v: [r for r in results if r.run.role == POINT and float(r.run.value) == v] for v in table}
    summary: dict[str, Any] = {
        "param": spec.param, "metric": spec.metric, "threshold": spec.threshold, "search": search,
        "baseline": _baseline_block(spec, results),
        "points": [{"value": s.value, "n": s.n, "mean": s.mean, "std": s.std,
                    "seeds": {str(r.run.seed): r.metric for r in by_value[s.value] if r.status == "done"},
                    "diverged": sorted(r.run.seed for r in by_value[s.value] if r.status == "done" and r.diverged),
                    "missing": sorted(r.run.seed for r in by_value[s.value] if r.status != "done"),
                    "complete": s.n == len(seeds)}
                   for s in stats],
        "incomplete": [{"value": v, "missing": sorted(r.run.seed for r in rs if r.status != "done"),
                        "failed": sorted(r.run.seed for r in rs if r.status == "failed")}
                       for v, rs in sorted(by_value.items()) if any(r.status != "done" for r in rs)],
        "runs": {status: sum(r.status == status for r in results) for status in ("done", "failed", "pending")},
        "diverged": [{"role": r.run.role, "value": r.run.value, "seed": r.run.seed, "step": r.diverged_step,
                      "counted": r.metric, "counted_as": r.source,
                      "run_dir": str(r.run_dir) if r.run_dir else None}
                     for r in results if r.status == "done" and r.diverged],
        "failed": [{"role": r.run.role, "value": r.run.value, "seed": r.run.seed, "key": r.run.key,
                    "run_dir": str(r.run_dir) if r.run_dir else None, "error": r.error, "attempts": r.attempts}
                   for r in results if r.status == "failed"],
        "randomness": randomness(results),
        "code_versions": code_versions(results),
        "spec": spec.to_dict(),
    }
    summary["runs"]["planned"] = len(results)
    summary["runs"]["diverged"] = len(summary["diverged"])
    bounds = metric_bounds(spec.metric, table, base)
    for name, fraction in ((f"d_int{_percent(spec.threshold)}", spec.threshold), ("d_int100", 1.0)):
        summary[name] = _dim_block(table, base, fraction, spec, stats, bounds)
    summary["warnings"] = _warnings(summary)
    return summary


def randomness(results: Sequence[RunResult]) -> dict[str, Any]:
    """Which config keys differ between the seeds of one swept value (read from the finished runs' resolved
    .hydra/config.yaml), what those keys draw, and the seed keys (and adapt.init_from) that stayed fixed."""
    groups: dict[tuple[str, float | None], list[dict[str, Any]]] = {}
    for r in results:
        if r.status == "done" and r.run_dir is not None:
            config = flat_config(r.run_dir)
            if config is not None:
                groups.setdefault((r.run.role, r.run.value), []).append(config)
    compared = [configs for configs in groups.values() if len(configs) > 1]
    varied: set[str] = set()
    for configs in compared:
        for key in set().union(*configs):
            if len({json.dumps(c.get(key), sort_keys=True, default=str) for c in configs}) > 1:
                varied.add(key)
    every = [c for configs in compared for c in configs]
    fixed = {}
    for key in sorted({k for c in every for k in c if _is_seed_key(k) or k == "adapt.init_from"} - varied):
        seen = [c[key] for c in every if c.get(key) is not None]  # e.g. adapt.seed exists in subspace runs only
        if seen:
            fixed[key] = seen[0]
    out: dict[str, Any] = {
        "compared_runs": len(every),
        "varied": {key: SEED_ROLES.get(key, "not a seed key: check why it depends on the seed")
                   for key in sorted(varied)},
        "fixed": fixed,
    }
    if not compared:
        out["note"] = "no swept value has two finished seeds yet: nothing to compare"
    elif "adapt.init_from" in fixed:
        out["note"] = ("θ0 is the same checkpoint (adapt.init_from) for every seed; `seed` only draws what is not "
                       "loaded from it (e.g. adapt.reinit modules)")
    return out


def code_versions(results: Sequence[RunResult]) -> list[dict[str, Any]]:
    """The distinct code versions (metrics.json `code`) of the runs counted, with how many runs each made."""
    seen: dict[str, dict[str, Any]] = {}
    for r in results:
        if r.status == "done":
            code = r.code or {"results_version": None, "note": "metrics.json records no code version"}
            entry = seen.setdefault(json.dumps(code, sort_keys=True), {**code, "runs": 0})
            entry["runs"] += 1
    return list(seen.values())


def _warnings(summary: dict[str, Any]) -> list[str]:
    """Plain-language warnings a reader of the summary must not miss."""
    out = []
    versions = summary["code_versions"]
    if len(versions) > 1:
        described = "; ".join(f"{v.get('runs')} run(s) at results_version {v.get('results_version')}, commit "
                              f"{(v.get('commit') or 'unknown')[:10]}{' (dirty)' if v.get('dirty') else ''}, "
                              f"sources {v.get('source_hash')}" for v in versions)
        out.append(f"the runs aggregated here come from {len(versions)} code versions ({described}); equal "
                   "results_version means no change to what a run computes was declared between them")
    if summary["baseline"].get("diverged"):
        out.append(f"baseline seeds {summary['baseline']['diverged']} diverged: the baseline itself is partly a "
                   "last good value or chance, so fractions of it say little; fix the baseline's training first")
    if summary["diverged"]:
        out.append(f"{len(summary['diverged'])} run(s) diverged (loss or weights NaN/inf); they count with their "
                   "last good value or chance, see `diverged`")
    if summary["incomplete"]:
        out.append(f"{len(summary['incomplete'])} value(s) lack seeds (failed or not yet run); their seed-means "
                   "are over fewer seeds, see `incomplete`")
    if summary["metric"].startswith("best/"):
        out.append(f"sweep.metric={summary['metric']} is a maximum over the evaluations of the split it reports "
                   "(selected on the same data); use test/acc, measured on the checkpoint chosen on val")
    falls = _falls(summary)
    if falls:
        out.append(falls)
    for name in (k for k in summary if k.startswith("d_int")):
        if summary[name].get("ci_note"):
            out.append(f"{name}: {summary[name]['ci_note']}")
            break
    return out


FALL = 0.05  # a seed-mean this far below the best at a smaller value: the runs at the larger value trained worse


def metric_falls(means: dict[float, float]) -> tuple[float, float, float, float] | None:
    """(peak value, its mean, largest value, its mean) when the seed-mean at the largest value lies FALL or more
    below the best at a smaller value: those runs trained worse without diverging, so the grid's top bounds nothing."""
    if len(means) < 2:
        return None
    peak = max(means, key=means.get)
    top = max(means)
    return (peak, means[peak], top, means[top]) if top > peak and means[top] <= means[peak] - FALL else None


def _falls(summary: dict[str, Any]) -> str | None:
    """The warning for metric_falls over the summary's seed-means."""
    fall = metric_falls({p["value"]: p["mean"] for p in summary["points"] if p.get("mean") is not None})
    if fall is None:
        return None
    peak, best, top, last = fall
    return (f"{summary['metric']} falls from {best:.3f} at {summary['param']}={peak:g} to {last:.3f} at {top:g}: "
            "the runs at larger values trained worse without diverging (often a step size too large there), so a "
            f"d_int not reached on this grid is only known to lie above {peak:g}")


def _is_seed_key(key: str) -> bool:
    """A config key naming a random seed (`seed`, `adapt.seed`, `data.split_seed`, …)."""
    last = key.rsplit(".", 1)[-1]
    return last == "seed" or last.endswith("_seed")


def _baseline_block(spec: SweepSpec, results: Sequence[RunResult]) -> dict[str, Any]:
    """How the baseline was obtained and its value (the mean over the seeds that have a result)."""
    if not spec.baseline_is_measured:
        return {"kind": "given", "value": float(spec.baseline), "n": 0, "std": None, "seeds": {}}
    runs = [r for r in results if r.run.role == BASELINE]
    base = [float(r.metric) for r in runs if r.status == "done"]
    mean = sum(base) / len(base) if base else None
    std = (math.sqrt(sum((b - mean) ** 2 for b in base) / (len(base) - 1)) if len(base) > 1 else 0.0) if base else None
    return {"kind": "full", "value": mean, "n": len(base), "std": std,
            "seeds": {str(r.run.seed): r.metric for r in runs if r.status == "done"},
            "diverged": sorted(r.run.seed for r in runs if r.status == "done" and r.diverged),
            "missing": sorted(r.run.seed for r in runs if r.status != "done"),
            "overrides": ["adapt=full", *spec.baseline_overrides]}


def _dim_block(table: dict[float, list[float]], base: float | list[float], fraction: float, spec: SweepSpec,
               stats: list, bounds: tuple[float, float]) -> dict[str, Any]:
    """One d_int entry of summary.json, with its status, bootstrap size and a human-readable note."""
    if isinstance(base, list) and not any(math.isfinite(b) for b in base):
        return {"value": None, "status": "no baseline", "reached": False, "fraction": fraction, "target": None,
                "ci95": [None, None],
                "note": "no baseline yet: the baseline runs have not finished (see `runs` and `failed`)"}
    dim: IntrinsicDim = intrinsic_dimension(table, base, fraction, n_boot=spec.bootstrap, bounds=bounds)
    swept = [s.value for s in stats]
    if not dim.determined:
        status = "undetermined"
        low, high = dim.possible
        note = (f"seeds without a result (failed or not yet run, see `incomplete`) could put it "
                f"anywhere from {_text(low)} to {_text(high)} (missing results filled with {bounds[0]:g} / "
                f"{bounds[1]:g}); the finished seeds alone give {_text(dim.observed)}. Rerun the sweep to complete")
    elif dim.reached:
        status = "reached"
        note = f"first {spec.param} whose seed-mean {spec.metric} reaches {fraction:g} x baseline"
    elif swept:
        status = "not reached"
        note = f"never reached: best seed-mean {max(s.mean for s in stats):.4g} < target {dim.target:.4g} " \
               f"up to {spec.param}={max(swept):g}; extend sweep.values upwards"
    else:
        status = "not reached"
        note = "no finished runs yet"
    block = {"value": dim.value, "status": status, "reached": dim.reached, "fraction": fraction,
             "target": dim.target, "ci95": [dim.ci_low, dim.ci_high], "bootstrap_mean": dim.boot_mean,
             "bootstrap_std": dim.boot_std, "reached_fraction": dim.reached_fraction,
             "bootstrap_resamples": spec.bootstrap, "seeds": dim.n_seeds,
             "distinct_resamples": dim.distinct_resamples, "max_distinct_resamples": dim.max_distinct_resamples,
             "ci_note": coarse_note(dim.n_seeds, dim.max_distinct_resamples), "note": note}
    if not dim.determined:
        block.update(possible=list(dim.possible), from_finished_seeds=dim.observed)
    return block


def _text(value: float | None) -> str:
    """A d_int bound for prose."""
    return "never reached" if value is None else f"{value:g}"


def _percent(fraction: float) -> str:
    """0.9 → '90', 0.95 → '95', 0.925 → '92.5'."""
    return f"{fraction * 100:g}"
