"""d_int90 / d_int100 and the bootstrap over seeds on synthetic result tables (Li et al.'s definition)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from idlab.sweep.analysis import coarse_note, first_reaching, intrinsic_dimension, point_stats
from idlab.sweep.bisect import bracket, log_points, next_candidates


def test_d_int90_is_the_first_value_whose_seed_mean_reaches_the_threshold() -> None:
    table = {10: [0.50, 0.52], 100: [0.86, 0.88], 1000: [0.95, 0.93], 4000: [0.99, 0.97]}
    dim = intrinsic_dimension(table, baseline=[1.0, 1.0], fraction=0.9, n_boot=200)
    assert dim.target == pytest.approx(0.9)
    assert dim.value == 1000 and dim.reached
    # A single seed above the threshold does not count: the seed-mean must reach it.
    assert intrinsic_dimension({100: [0.95, 0.80]}, 1.0, 0.9).value is None


def test_reaching_the_target_exactly_counts_and_first_value_wins_on_non_monotone_tables() -> None:
    assert first_reaching([100, 200], [0.9 * 0.98, 0.5], 0.9 * 0.98) == 100
    assert intrinsic_dimension({100: [0.95], 200: [0.80], 300: [0.96]}, 1.0, 0.9).value == 100


def test_never_reached_reports_none_with_an_open_upper_interval() -> None:
    dim = intrinsic_dimension({10: [0.2, 0.3], 100: [0.7, 0.75]}, baseline=[0.98, 0.99], fraction=0.9)
    assert dim.value is None and not dim.reached
    assert dim.ci_low is None and dim.ci_high is None
    assert dim.reached_fraction == 0.0 and dim.boot_mean is None


def test_given_baseline_number_and_measured_baseline_seeds_agree_when_noise_free() -> None:
    table = {100: [0.80] * 3, 300: [0.89] * 3, 1000: [0.95] * 3}
    measured = intrinsic_dimension(table, baseline=[0.99, 0.99, 0.99], fraction=0.9)
    given = intrinsic_dimension(table, baseline=0.99, fraction=0.9)
    assert measured.value == given.value == 1000
    # No seed spread: every bootstrap resample gives the same answer.
    assert (measured.ci_low, measured.ci_high, measured.boot_std) == (1000, 1000, 0.0)


def test_bootstrap_interval_covers_the_grid_values_that_noisy_seeds_make_plausible() -> None:
    rng = np.random.default_rng(1)
    grid = [100, 200, 400, 800, 1600]
    truth = {100: 0.80, 200: 0.87, 400: 0.895, 800: 0.92, 1600: 0.97}
    table = {v: list(truth[v] + rng.normal(0, 0.03, size=5)) for v in grid}
    dim = intrinsic_dimension(table, baseline=[1.0] * 5, fraction=0.9, n_boot=2000)
    assert dim.ci_low in grid and dim.ci_high in grid
    assert dim.ci_low <= dim.value <= dim.ci_high
    assert dim.ci_low < dim.ci_high, "seed noise near the threshold must widen the interval"
    assert 0 < dim.boot_std and dim.ci_low <= dim.boot_mean <= dim.ci_high


def test_borderline_sweep_reports_the_share_of_resamples_that_reach() -> None:
    table = {100: [0.70, 0.80], 1000: [0.86, 0.95]}  # mean 0.905: reached, but not by every resample
    dim = intrinsic_dimension(table, baseline=1.0, fraction=0.9, n_boot=4000, rng_seed=3)
    assert dim.value == 1000
    assert 0.5 < dim.reached_fraction < 1.0
    assert dim.ci_high is None, "more than 2.5 % of resamples never reach: the upper bound is open"


def test_bootstrap_is_reproducible_and_resamples_the_baseline() -> None:
    table = {100: [0.86, 0.90, 0.88], 200: [0.91, 0.93, 0.92]}
    a = intrinsic_dimension(table, [0.97, 1.0, 0.99], 0.9, n_boot=500, rng_seed=7)
    b = intrinsic_dimension(table, [0.97, 1.0, 0.99], 0.9, n_boot=500, rng_seed=7)
    assert a == b
    # A spread-out baseline moves the target between resamples, so the answer varies too.
    wide = intrinsic_dimension(table, [0.90, 1.0, 1.05], 0.9, n_boot=500, rng_seed=7)
    assert wide.boot_std > 0


def test_point_stats_skips_values_without_results_and_uses_sample_std() -> None:
    stats = point_stats({300: [0.5, 0.7], 100: [0.4], 200: []})
    assert [s.value for s in stats] == [100, 300]
    assert stats[0].std == 0.0 and stats[1].std == pytest.approx(np.std([0.5, 0.7], ddof=1))


def test_failed_baseline_is_an_error() -> None:
    with pytest.raises(ValueError, match="baseline"):
        intrinsic_dimension({100: [0.9]}, baseline=[], fraction=0.9)


def test_bisect_narrows_a_planted_threshold_with_few_evaluations() -> None:
    planted = 900.0
    accuracy = lambda d: min(1.0, d / 1000)  # noqa: E731 - monotone, crosses 0.9 × baseline 1.0 at d = 900
    measured = {v: accuracy(v) for v in log_points(10, 10_000, 4, integer=True, interior=False)}
    rounds = 1
    while candidates := next_candidates(measured, 0.9 * 1.0, tolerance=0.02, count=3, integer=True):
        measured.update({v: accuracy(v) for v in candidates})
        rounds += 1
    state = bracket(measured, 0.9, tolerance=0.02, integer=True)
    assert state.done and state.low < planted <= state.high
    assert state.high / state.low <= 1.02 or state.high - state.low <= 1
    assert len(measured) <= 4 + 3 * 6, "bisection must need far fewer points than a 2 % log grid (~350)"
    assert rounds <= 7


def test_bisect_stops_at_once_when_the_range_does_not_bracket_the_threshold() -> None:
    never = bracket({10: 0.1, 100: 0.5}, target=0.9, tolerance=0.1, integer=True)
    assert never.done and never.high is None and "never reached" in never.reason
    always = bracket({10: 0.95, 100: 0.97}, target=0.9, tolerance=0.1, integer=True)
    assert always.done and always.low is None and "smallest value" in always.reason
    assert next_candidates({10: 0.1, 100: 0.5}, 0.9, 0.1, 3, True) == []


def test_log_points_are_log_spaced_and_integer_when_asked() -> None:
    assert log_points(10, 1000, 3, integer=True, interior=False) == [10, 100, 1000]
    inner = log_points(100, 1000, 3, integer=False, interior=True)
    ratios = [b / a for a, b in zip([100, *inner], [*inner, 1000])]
    assert all(math.isclose(r, ratios[0]) for r in ratios)
    assert log_points(10, 11, 3, integer=True, interior=True) == []


def test_bootstrap_resamples_seeds_jointly_across_values() -> None:
    # Seed 1 is the better draw (θ0, P, data order) at every d. Paired resamples {0,0}, {0,1}, {1,1} give d_int
    # 400, 200, 100 with probabilities 1/4, 1/2, 1/4 (mean 225); resampling each value independently would mix
    # seeds across d and give 100, 200, 400 with 1/4, 9/16, 3/16 (mean 212.5).
    table = {100: [0.80, 0.92], 200: [0.85, 0.97], 400: [0.95, 0.99]}
    dim = intrinsic_dimension(table, baseline=1.0, fraction=0.9, n_boot=20000, rng_seed=1)
    assert dim.boot_mean == pytest.approx(225, abs=4)
    assert (dim.n_seeds, dim.distinct_resamples, dim.max_distinct_resamples) == (2, 3, 3)
    # A measured baseline is resampled with the same seed indices: seed 1's high baseline goes with its high points.
    paired = intrinsic_dimension({100: [0.45, 0.9]}, baseline=[0.5, 1.0], fraction=0.9, n_boot=2000)
    assert paired.reached_fraction == 1.0, "each seed reaches 90 % of its own baseline; every resample does"


def test_a_missing_seed_that_could_change_the_answer_leaves_it_undetermined() -> None:
    nan = float("nan")
    dim = intrinsic_dimension({100: [0.95, nan], 1000: [0.99, 0.99]}, 1.0, 0.9, bounds=(0.0, 1.0))
    assert not dim.determined and dim.value is None and not dim.reached
    assert dim.possible == (100, 1000) and dim.observed == 100
    # Here no value of the missing seed can matter: even a perfect result leaves the mean at 100 below 0.9.
    settled = intrinsic_dimension({100: [0.2, nan], 1000: [0.99, 0.99]}, 1.0, 0.9, bounds=(0.0, 1.0))
    assert settled.determined and settled.value == 1000
    # A missing baseline seed moves the target too.
    moved = intrinsic_dimension({100: [0.85, 0.85], 1000: [0.99, 0.99]}, [0.9, nan], 0.9, bounds=(0.0, 1.0))
    assert not moved.determined and moved.possible == (100, 1000)


def test_few_seeds_are_said_to_make_the_interval_coarse() -> None:
    assert "at most 10 distinct resamples" in coarse_note(3, 10)
    assert "single point" in coarse_note(1, 1)
    assert coarse_note(5, 126) is None
