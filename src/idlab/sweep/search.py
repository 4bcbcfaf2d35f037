"""Search strategies: the whole grid in one launch, or bisection rounds on a log scale."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from idlab.sweep import bisect
from idlab.sweep.plan import baseline_runs, grid_runs, point_runs
from idlab.sweep.results import baseline_samples, seed_means
from idlab.sweep.spec import SweepSpec

if TYPE_CHECKING:
    from idlab.sweep.driver import SweepDriver


def run_grid(driver: "SweepDriver", spec: SweepSpec, base: list[str], dry_run: bool) -> dict[str, Any]:
    """Every value × seed plus the baseline, in one launch."""
    driver.execute(grid_runs(spec, base), dry_run)
    return {"kind": "grid"}


def run_bisect(driver: "SweepDriver", spec: SweepSpec, base: list[str], dry_run: bool) -> dict[str, Any]:
    """Rounds of log-spaced candidates (each round one parallel launch) until the threshold is bracketed."""
    first = bisect.log_points(min(spec.values), max(spec.values), spec.points_per_round + 1, spec.integer,
                              interior=False)
    driver.execute(baseline_runs(spec, base) + point_runs(spec, base, first), dry_run)
    rounds, reason, failed_values = 1, "dry run: only the first round is planned", set()
    while not dry_run:
        results = driver.results()
        base_values = baseline_samples(spec, results)
        if not base_values:
            reason = "stopped: every baseline run failed"
            break
        target = spec.threshold * sum(base_values) / len(base_values)
        means = seed_means(results, spec.seeds)  # complete values only: diverged runs count, crashed ones never
        failed_values |= {float(r.run.value) for r in results if r.run.value is not None} - set(means)
        state = bisect.bracket(means, target, spec.tolerance, spec.integer)
        candidates = bisect.next_candidates(means, target, spec.tolerance, spec.points_per_round, spec.integer,
                                            exclude=failed_values)
        if state.done:
            reason = state.reason
            break
        if not candidates:
            reason = (f"no untried value between {state.low:g} and {state.high:g} (values with failed seeds: "
                      f"{sorted(failed_values)})")
            break
        if rounds >= spec.max_rounds:
            reason = f"stopped after sweep.max_rounds={spec.max_rounds}; threshold between {state.low:g} and {state.high:g}"
            break
        rounds += 1
        driver.execute(point_runs(spec, base, candidates))
    return {"kind": "bisect", "rounds": rounds, "stop_reason": reason, "tolerance": spec.tolerance}
