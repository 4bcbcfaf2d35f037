"""d_int90 / d_int100 from a results table (Li et al. 2018), with a paired bootstrap over seeds.

A table maps each swept value to its per-seed results in one fixed seed order (NaN: that seed has no result, e.g.
its run crashed). A seed is one draw of θ0, P and data order shared by every value and the baseline, so the
bootstrap resamples seed *indices* jointly for all of them.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

# Relative slack so that a seed-mean equal to the target (up to float rounding) counts as reaching it.
_REACH_SLACK = 1e-9


@dataclass(frozen=True)
class PointStats:
    """Seed statistics of the metric at one swept value (over the seeds that have a result)."""

    value: float
    n: int
    mean: float
    std: float


@dataclass(frozen=True)
class IntrinsicDim:
    """The first swept value whose seed-mean reaches `fraction` × baseline, with its paired-bootstrap spread."""

    fraction: float
    target: float
    value: float | None  # None: never reached within the swept values, or undetermined (see `determined`)
    ci_low: float | None  # 2.5 % bootstrap quantile (None: not reached in that quantile)
    ci_high: float | None  # 97.5 % bootstrap quantile (None: not reached in that quantile)
    boot_mean: float | None  # mean over the resamples that reach the target (Li et al.'s "786 ± 66")
    boot_std: float | None
    reached_fraction: float  # share of bootstrap resamples that reach the target at all
    determined: bool = True  # False: filling the missing seeds with the worst/best case gives different answers
    possible: tuple[float | None, float | None] = (None, None)  # (best case, worst case); None = not reached
    observed: float | None = None  # the answer from the seeds that have results (equals `value` when determined)
    n_seeds: int = 0
    distinct_resamples: int = 0  # distinct multisets of seeds among the bootstrap resamples
    max_distinct_resamples: int = 0  # C(2n-1, n): all a bootstrap over n seeds can draw

    @property
    def reached(self) -> bool:
        """Whether the seed-means reach the target at some swept value (and missing seeds cannot change that)."""
        return self.value is not None


def point_stats(table: Mapping[float, Sequence[float]]) -> list[PointStats]:
    """Mean and sample std (ddof=1; 0 for one seed) per value over its finite results, ascending; values without
    any result are skipped."""
    out = []
    for value in sorted(table):
        samples = np.asarray(table[value], dtype=float)
        samples = samples[np.isfinite(samples)]
        if samples.size == 0:
            continue
        std = float(samples.std(ddof=1)) if samples.size > 1 else 0.0
        out.append(PointStats(float(value), int(samples.size), float(samples.mean()), std))
    return out


def first_reaching(values: Sequence[float], means: Sequence[float], target: float) -> float | None:
    """The smallest value whose mean is ≥ target (values need not be sorted); None if none does."""
    reaching = [v for v, m in zip(values, means) if _reaches(m, target)]
    return min(reaching) if reaching else None


def intrinsic_dimension(table: Mapping[float, Sequence[float]], baseline: float | Sequence[float],
                        fraction: float, n_boot: int = 1000, rng_seed: int = 0,
                        bounds: tuple[float, float] | None = None) -> IntrinsicDim:
    """d_int at `fraction` of the baseline: a given number, or per-seed baseline results (same seed order as the
    table, resampled jointly with it). `bounds` (lowest, highest possible metric) fill missing seeds to decide
    whether they could change the answer (default: the smallest and largest result present)."""
    values, matrix, base, given = _aligned(table, baseline)
    finite_base = base[np.isfinite(base)]
    if finite_base.size == 0:
        raise ValueError(f"baseline {baseline!r} has no finite result; the baseline runs failed")
    target = fraction * float(finite_base.mean())
    observed = _first(values, _nanmean(matrix, axis=1), target)
    missing = bool(np.isnan(matrix).any() or np.isnan(base).any())
    possible = (observed, observed)
    if missing:
        present = np.concatenate([matrix[np.isfinite(matrix)], finite_base])
        low, high = bounds if bounds is not None else (float(present.min()), float(present.max()))
        best = _first(values, _nanmean(np.where(np.isnan(matrix), high, matrix), axis=1),
                      fraction * float(np.where(np.isnan(base), low, base).mean()))
        worst = _first(values, _nanmean(np.where(np.isnan(matrix), low, matrix), axis=1),
                       fraction * float(np.where(np.isnan(base), high, base).mean()))
        possible = (best, worst)
    determined = possible[0] == possible[1]
    n_seeds = matrix.shape[1] if matrix.size else (0 if given else base.size)
    boot, distinct = _paired_bootstrap(values, matrix, None if given else base, float(finite_base.mean()), fraction,
                                       n_boot, np.random.default_rng(rng_seed))
    reached = boot[np.isfinite(boot)]
    low_q, high_q = np.quantile(boot, [0.025, 0.975], method="inverted_cdf") if boot.size else (math.inf, math.inf)
    return IntrinsicDim(
        fraction=fraction, target=target, value=_finite_or_none(observed) if determined else None,
        ci_low=_finite_or_none(low_q), ci_high=_finite_or_none(high_q),
        boot_mean=float(reached.mean()) if reached.size else None,
        boot_std=float(reached.std(ddof=1)) if reached.size > 1 else (0.0 if reached.size else None),
        reached_fraction=float(reached.size / boot.size) if boot.size else 0.0,
        determined=determined, possible=(_finite_or_none(possible[0]), _finite_or_none(possible[1])),
        observed=_finite_or_none(observed), n_seeds=int(n_seeds), distinct_resamples=distinct,
        max_distinct_resamples=math.comb(2 * n_seeds - 1, n_seeds) if n_seeds else 0,
    )


def coarse_note(n_seeds: int, max_distinct: int) -> str | None:
    """A plain warning when so few seeds make the bootstrap CI coarse (None from 4 seeds on)."""
    if n_seeds <= 1:
        return "one seed: the bootstrap cannot see seed-to-seed variation, so the CI is a single point"
    if n_seeds <= 3:
        return (f"only {n_seeds} seeds: a bootstrap over them can draw at most {max_distinct} distinct resamples, "
                "so this CI is coarse; add seeds for a usable interval")
    return None


def _aligned(table: Mapping[float, Sequence[float]], baseline: float | Sequence[float]
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """Sorted values, the (values × seeds) result matrix, the baseline (per seed, or the given number) and
    whether it was given."""
    values = np.asarray(sorted(table), dtype=float)
    rows = [np.asarray(table[v], dtype=float) for v in sorted(table)]
    lengths = {row.size for row in rows}
    if len(lengths) > 1:
        raise ValueError(f"every value needs one entry per seed (NaN for a missing result); got lengths {lengths}")
    matrix = np.vstack(rows) if rows else np.empty((0, 0))
    given = np.ndim(baseline) == 0
    base = np.atleast_1d(np.asarray(baseline, dtype=float))
    if not given and matrix.size and base.size != matrix.shape[1]:
        raise ValueError(f"the baseline has {base.size} seeds but the table {matrix.shape[1]}; the bootstrap pairs "
                         "them seed by seed")
    return values, matrix, base, given


def _paired_bootstrap(values: np.ndarray, matrix: np.ndarray, base: np.ndarray | None, given: float,
                      fraction: float, n_boot: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """d_int of each resample of seed indices (inf where it never reaches) and the number of distinct resamples.
    `base` holds the per-seed baseline (resampled with the same indices), None for the given number `given`."""
    n = matrix.shape[1] if matrix.size else 0
    if n == 0:
        return np.full(n_boot, math.inf), 0
    index = rng.integers(0, n, size=(n_boot, n))
    distinct = len({tuple(row) for row in np.sort(index, axis=1)})
    means = _nanmean(matrix[:, index], axis=2).T  # (n_boot, values)
    base_means = np.full(n_boot, given) if base is None else _nanmean(base[index], axis=1)
    targets = fraction * base_means
    with np.errstate(invalid="ignore"):
        hits = means >= targets[:, None] - _REACH_SLACK * np.abs(targets[:, None])
    first = np.argmax(hits, axis=1)
    return np.where(hits.any(axis=1), values[first], math.inf), distinct


def _nanmean(array: np.ndarray, axis: int) -> np.ndarray:
    """Mean over finite entries; NaN where there are none."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(array, axis=axis)


def _first(values: np.ndarray, means: np.ndarray, target: float) -> float:
    """First value reaching the target, inf when none does."""
    found = first_reaching(list(values), list(means), target)
    return math.inf if found is None else float(found)


def _reaches(mean: float, target: float) -> bool:
    """mean ≥ target up to float rounding."""
    return math.isfinite(mean) and mean >= target - _REACH_SLACK * abs(target)


def _finite_or_none(x: float | None) -> float | None:
    """JSON-friendly: infinities (never reached) become None."""
    return float(x) if x is not None and math.isfinite(x) else None
