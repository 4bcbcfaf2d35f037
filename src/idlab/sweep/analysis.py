"""d_int90 / d_int100 from a results table (Li et al. 2018), with a bootstrap over seeds."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

# Relative slack so that a seed-mean equal to the target (up to float rounding) counts as reaching it.
_REACH_SLACK = 1e-9


@dataclass(frozen=True)
class PointStats:
    """Seed statistics of the metric at one swept value."""

    value: float
    n: int
    mean: float
    std: float


@dataclass(frozen=True)
class IntrinsicDim:
    """The first swept value whose seed-mean reaches `fraction` × baseline, with its bootstrap spread."""

    fraction: float
    target: float
    value: float | None  # None: never reached within the swept values
    ci_low: float | None  # 2.5 % bootstrap quantile (None: not reached in that quantile)
    ci_high: float | None  # 97.5 % bootstrap quantile (None: not reached in that quantile)
    boot_mean: float | None  # mean over the resamples that reach the target (Li et al.'s "786 ± 66")
    boot_std: float | None
    reached_fraction: float  # share of bootstrap resamples that reach the target at all

    @property
    def reached(self) -> bool:
        """Whether the seed-means reach the target at some swept value."""
        return self.value is not None


def point_stats(table: Mapping[float, Sequence[float]]) -> list[PointStats]:
    """Mean and sample std (ddof=1; 0 for one seed) per value, ascending; values without results are skipped."""
    out = []
    for value in sorted(table):
        samples = np.asarray(table[value], dtype=float)
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
                        fraction: float, n_boot: int = 1000, rng_seed: int = 0) -> IntrinsicDim:
    """d_int at `fraction` of the baseline (a number, or per-seed baseline results that are resampled too)."""
    stats = point_stats(table)
    base_samples = np.atleast_1d(np.asarray(baseline, dtype=float))
    if base_samples.size == 0 or not np.all(np.isfinite(base_samples)):
        raise ValueError(f"baseline {baseline!r} has no finite result; the baseline runs failed")
    target = fraction * float(base_samples.mean())
    value = first_reaching([s.value for s in stats], [s.mean for s in stats], target)
    boot = _bootstrap(table, base_samples, fraction, n_boot, np.random.default_rng(rng_seed))
    reached = boot[np.isfinite(boot)]
    low, high = (np.quantile(boot, [0.025, 0.975], method="inverted_cdf") if boot.size else (math.inf, math.inf))
    return IntrinsicDim(
        fraction=fraction, target=target, value=value,
        ci_low=_finite_or_none(low), ci_high=_finite_or_none(high),
        boot_mean=float(reached.mean()) if reached.size else None,
        boot_std=float(reached.std(ddof=1)) if reached.size > 1 else (0.0 if reached.size else None),
        reached_fraction=float(reached.size / boot.size) if boot.size else 0.0,
    )


def _bootstrap(table: Mapping[float, Sequence[float]], base_samples: np.ndarray, fraction: float,
               n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """d_int of each resample (inf where the resample never reaches); seeds resampled per value."""
    values = [v for v in sorted(table) if len(table[v]) > 0]
    if not values:
        return np.full(n_boot, math.inf)
    means = np.empty((n_boot, len(values)))
    for j, v in enumerate(values):
        samples = np.asarray(table[v], dtype=float)
        means[:, j] = samples[rng.integers(0, samples.size, size=(n_boot, samples.size))].mean(axis=1)
    if base_samples.size > 1:
        base_means = base_samples[rng.integers(0, base_samples.size, size=(n_boot, base_samples.size))].mean(axis=1)
    else:
        base_means = np.full(n_boot, base_samples[0])
    targets = fraction * base_means
    hits = means >= targets[:, None] - _REACH_SLACK * np.abs(targets[:, None])
    first = np.argmax(hits, axis=1)
    return np.where(hits.any(axis=1), np.asarray(values, dtype=float)[first], math.inf)


def _reaches(mean: float, target: float) -> bool:
    """mean ≥ target up to float rounding."""
    return math.isfinite(mean) and mean >= target - _REACH_SLACK * abs(target)


def _finite_or_none(x: float) -> float | None:
    """JSON-friendly: infinities (never reached) become None."""
    return float(x) if math.isfinite(x) else None
