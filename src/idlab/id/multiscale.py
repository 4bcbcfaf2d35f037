"""Geometry across scales from one exact neighbour search: GRIDE (Denti et al. 2022), ID against scale, overlap.

Every function takes points (N, F) or a `distinct_search` result; with the latter, one search of k = range_max
certified neighbours per point serves GRIDE at every scale, the decimated TwoNN curve and neighbourhood overlaps.
"""
from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import numpy as np
import torch

from idlab.id.twonn import (
    IDEstimate, Neighbourhoods, check_fit_options, fit_twonn_batched, searched, within_subsets,
)

SCALING_METHODS = ("gride", "twonn")
_NEWTON_STEPS = 100
_SERIES_BELOW = 1e-6  # x below which h(x) = x / (1 - e^-x) and q(x) use their Taylor series


class Scaling(NamedTuple):
    """ID at each scale, smallest first: `ids`, `scales` (mean neighbour distance of the step), `errors`."""

    ids: np.ndarray
    scales: np.ndarray
    errors: np.ndarray

    @property
    def ranks(self) -> np.ndarray:
        """The largest neighbour rank of each step: n2 = 2, 4, …, (GRIDE), or its decimation equivalent."""
        return 2 ** np.arange(1, len(self.ids) + 1)


def _h(x: torch.Tensor) -> torch.Tensor:
    """x / (1 − e^−x), 1 at x = 0: GRIDE's score term d·log μ·μ^d / (μ^d − 1), without cancellation."""
    small = x < _SERIES_BELOW
    safe = torch.where(small, torch.ones_like(x), x)
    return torch.where(small, 1 + x / 2, safe / -torch.expm1(-safe))


def _q(x: torch.Tensor) -> torch.Tensor:
    """x² e^−x / (1 − e^−x)², 1 at x = 0: GRIDE's information term, without cancellation or overflow."""
    small = x < _SERIES_BELOW
    safe = torch.where(small, torch.ones_like(x), x)
    return torch.where(small, 1 - x * x / 12, safe * safe * torch.exp(-safe) / torch.expm1(-safe) ** 2)


def gride_fit(log_mu: torch.Tensor, n1: torch.Tensor, n2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """GRIDE maximum-likelihood IDs and standard errors for columns of log μ = log(r_n2 / r_n1) (N, S), batched.

    μ = r_n2/r_n1 has density d (μ^d − 1)^(n2−n1−1) / (B(n2−n1, n1) μ^(d(n2−1)+1)) (Denti et al. 2022); the
    log-likelihood (with (N − 1) log d, as DADApy and scikit-dimension, so n1 = 1, n2 = 2 is the unbiased TwoNN
    MLE (N − 1)/Σ log μ) is concave in d and its score
    s(d) = [(N−1) + (n2−n1−1) Σ h(d log μ)]/d − (n2−1) Σ log μ
    is convex and decreasing. Newton's method from a lower bound of the root therefore rises monotonically to it.
    The error is 1/√I(d) at the root, I(d) = [(N−1) + (n2−n1−1) Σ q(d log μ)]/d² the observed information.
    Ties (μ = 1) enter through the limits h(0) = q(0) = 1. All log μ = 0 (every point tied): an infinite ID.
    """
    log_mu = log_mu.double()
    n, device = log_mu.shape[0], log_mu.device
    n1, n2 = torch.as_tensor(n1, dtype=torch.float64, device=device), torch.as_tensor(n2, dtype=torch.float64,
                                                                                       device=device)
    a, b = n2 - n1 - 1, n2 - 1
    total = log_mu.sum(0)
    # h(x) >= 1 and h(x) >= x bound s from below by two functions whose roots lie below s's root
    d = torch.maximum((n - 1 + a * n) / (b * total), (n - 1) / (n1 * total))
    finite = torch.isfinite(d)
    d = torch.where(finite, d, torch.ones_like(d))  # every point tied: the likelihood rises forever (ID = inf)
    for _ in range(_NEWTON_STEPS):
        x = d * log_mu
        score = (n - 1 + a * _h(x).sum(0)) / d - b * total
        info = (n - 1 + a * _q(x).sum(0)) / d**2
        step = score / info
        d = d + step
        if not bool(((step.abs() > 1e-13 * d) & finite).any()):
            break
    info = (n - 1 + a * _q(d * log_mu).sum(0)) / d**2
    ids = torch.where(finite, d, torch.full_like(d, math.inf))
    errors = torch.where(finite, info.rsqrt(), torch.full_like(d, math.nan))
    return ids, errors


def check_ranks(n1: int, n2: int) -> None:
    """Reject neighbour ranks GRIDE cannot use."""
    if not (isinstance(n1, int) and isinstance(n2, int)) or isinstance(n1, bool) or isinstance(n2, bool):
        raise ValueError(f"GRIDE needs integer neighbour ranks, got n1={n1!r}, n2={n2!r}")
    if not 1 <= n1 < n2:
        raise ValueError(f"GRIDE needs 1 <= n1 < n2, got n1={n1}, n2={n2}; n1=1, n2=2 is TwoNN's MLE")


def gride(x: torch.Tensor | Neighbourhoods, n1: int = 1, n2: int = 2, chunk_size: int | None = None) -> IDEstimate:
    """GRIDE ID from each point's n1-th and n2-th exact neighbour distances; `std` is its standard error."""
    check_ranks(n1, n2)
    if n2 >= point_count(x):
        raise ValueError(f"n2={n2} needs more than {n2} points, got N={point_count(x)}; use n2 <= {point_count(x) - 1}")
    found = searched(x, n2, chunk_size=chunk_size)
    dist = found.neighbours().distances
    log_mu = torch.log(dist[:, n2 - 1] / dist[:, n1 - 1])[:, None]
    ids, errors = gride_fit(log_mu, torch.tensor([n1]), torch.tensor([n2]))
    value, error = torch.cat([ids, errors]).tolist()
    return IDEstimate(value, error)


def scale_steps(range_max: int) -> int:
    """Number of steps n2 = 2, 4, …, 2^S <= range_max; range_max must be an integer >= 2."""
    if not isinstance(range_max, int) or isinstance(range_max, bool) or range_max < 2:
        raise ValueError(f"range_max={range_max!r} must be an integer >= 2 (the largest neighbour rank; 64 is usual)")
    return int(math.log2(range_max))


def check_scaling(range_max: int, method: str, points: int | None = None) -> int:
    """Validate id_scaling's options (against the number of points when known); return the number of steps."""
    steps = scale_steps(range_max)
    if method not in SCALING_METHODS:
        raise ValueError(f"method={method!r} is not an ID-scaling method; use one of {list(SCALING_METHODS)}")
    if points is not None and range_max >= points:
        raise ValueError(f"range_max={range_max} needs more than {range_max} points, got N={points}; "
                         f"use range_max <= {points - 1}")
    if points is not None and method == "twonn" and points // 2 ** (steps - 1) < 3:
        raise ValueError(f"method='twonn' with range_max={range_max} splits N={points} points into "
                         f"{2 ** (steps - 1)} blocks of {points // 2 ** (steps - 1)} < 3 points; lower range_max")
    return steps


def id_scaling(x: torch.Tensor | Neighbourhoods, range_max: int = 64, method: str = "gride", seed: int = 0,
               discard_fraction: float = 0.1, twonn_fit: str = "linear", chunk_size: int | None = None) -> Scaling:
    """ID from the smallest to the largest scale, from one search of 2^S <= range_max certified neighbours.

    `gride` (DADApy's return_id_scaling_gride): GRIDE at n1 = 1, 2, …, 2^(S−1), n2 = 2·n1; the scale of a step is
    the mean of every point's r_n1 and r_n2, the error the Fisher standard error.
    `twonn` (DADApy's return_id_scaling_2NN): TwoNN (skdim's fit, `discard_fraction`, `twonn_fit`) on a seeded
    random partition of the points into 2^i blocks, i = 0 … S−1, neighbours searched within each block; the ID is
    the mean over blocks, the error their std (ddof 0) / √blocks, the scale the mean r1, r2 within blocks.
    """
    steps = check_scaling(range_max, method, point_count(x))
    if method == "twonn":
        check_fit_options(discard_fraction, twonn_fit)
    k = 2**steps
    found = searched(x, k, chunk_size=chunk_size)
    check_scaling(range_max, method, found.points.shape[0])
    if method == "gride":
        dist = found.neighbours().distances
        n1 = 2 ** torch.arange(steps, device=dist.device)
        r1, r2 = dist[:, n1 - 1], dist[:, 2 * n1 - 1]
        ids, errors = gride_fit(torch.log(r2 / r1), n1, 2 * n1)
        scales = ((r1 + r2) / 2).mean(0)
        return Scaling(*(t.cpu().numpy() for t in (ids, scales, errors)))
    return decimation_curve(found, steps, seed, discard_fraction, twonn_fit)


def decimation_curve(found: Neighbourhoods, steps: int, seed: int, discard_fraction: float,
                     method: str) -> Scaling:
    """TwoNN on 1, 2, 4, … disjoint random blocks; within-block neighbours from the shared search (exact)."""
    n, device = found.points.shape[0], found.points.device
    generator = torch.Generator().manual_seed(seed)
    ids, scales, errors = [], [], []
    for step in range(steps):
        blocks = 2**step
        size = n // blocks
        partition = torch.randperm(n, generator=generator)[: blocks * size].reshape(blocks, size).to(device)
        r = within_subsets(found.points, found.search, partition)
        values = fit_twonn_batched(r, discard_fraction, method)
        spread = values.std(correction=0) / math.sqrt(blocks) if blocks > 1 else torch.zeros_like(values[0])
        ids.append(values.mean())
        scales.append(r.mean())
        errors.append(spread)
    return Scaling(*(torch.stack(t).cpu().numpy() for t in (ids, scales, errors)))


def check_overlap_k(k: int, points: int | None = None) -> None:
    """Reject a neighbourhood size outside 1 … N − 1."""
    if not isinstance(k, int) or isinstance(k, bool) or k <= 0:
        raise ValueError(f"k={k!r} must be a positive integer (neighbours per point; Doimo et al. use 30)")
    if points is not None and k >= points:
        raise ValueError(f"k={k} neighbours need more than {k} points, got N={points}; use k <= {points - 1}")


def point_count(x: torch.Tensor | Neighbourhoods) -> int:
    """Number of (distinct) points a search or a point tensor holds."""
    return x.points.shape[0] if isinstance(x, Neighbourhoods) else len(x)


def neighbourhood_overlap(a: torch.Tensor | Neighbourhoods, b: torch.Tensor | Neighbourhoods, k: int = 30,
                          weighted: bool = False, chunk_size: int | None = None) -> float:
    """Mean fraction of each point's k nearest neighbours in `a` that it shares with `b` (Doimo et al. 2020).

    `b` is another representation of the same points (N, F'), or one integer label per point (N,): then the
    fraction of the k neighbours with the point's own label (label overlap, DADApy's return_label_overlap;
    `weighted=True` averages classes equally, DADApy's default). Exact duplicates are dropped first, as for
    TwoNN: a point repeating an earlier one (in either representation) is left out of both.
    """
    check_overlap_k(k)
    b = b if isinstance(b, (Neighbourhoods, torch.Tensor)) else torch.as_tensor(b)
    count_a = a.inputs if isinstance(a, Neighbourhoods) else len(a)
    count_b = b.inputs if isinstance(b, Neighbourhoods) else len(b)
    if count_a != count_b:
        raise ValueError(f"the two representations must hold the same points: got N={count_a} and N={count_b}")
    check_overlap_k(k, point_count(a))
    first = searched(a, k, chunk_size=chunk_size)
    if isinstance(b, torch.Tensor) and b.ndim == 1:
        if b.is_floating_point() or b.is_complex():
            raise ValueError(f"labels must be integers (one class per point), got dtype {b.dtype}; "
                             "pass a second representation as (N, F)")
        return label_overlap(first, first.select(b), k, weighted)
    if weighted:
        raise ValueError("weighted=True weighs classes equally: it applies to label overlap, not to two "
                         "representations")
    check_overlap_k(k, point_count(b))
    first, second = common_points(first, searched(b, k, chunk_size=chunk_size), k, chunk_size)
    index_a = first.neighbours().indices[:, :k]
    index_b = second.neighbours().indices[:, :k].to(index_a.device)
    shared = torch.zeros(index_a.shape[0], dtype=torch.long, device=index_a.device)
    step = max(1, 2**24 // (k * k))
    for start in range(0, index_a.shape[0], step):
        rows = slice(start, start + step)
        shared[rows] = (index_a[rows, :, None] == index_b[rows, None, :]).any(2).sum(1)
    return float(shared.double().mean() / k)


def label_overlap(found: Neighbourhoods, labels: torch.Tensor, k: int, weighted: bool = False) -> float:
    """Mean fraction of each distinct point's k exact nearest neighbours that share its label."""
    labels = labels.to(found.points.device)
    index = found.neighbours().indices[:, :k]
    fraction = (labels[index] == labels[:, None]).double().mean(1)
    if not weighted:
        return float(fraction.mean())
    _, group, counts = torch.unique(labels, return_inverse=True, return_counts=True)
    weights = 1.0 / counts[group].double()
    return float((fraction * weights).sum() / weights.sum())


def common_points(first: Neighbourhoods, second: Neighbourhoods, k: int,
                  chunk_size: int | None) -> tuple[Neighbourhoods, Neighbourhoods]:
    """Both searches restricted to the input rows distinct in both (searched again only if that drops rows)."""
    if first.rows is None and second.rows is None:
        return first, second
    rows = [torch.arange(f.inputs, device=f.points.device) if f.rows is None else f.rows for f in (first, second)]
    if rows[0].numel() == rows[1].numel() and torch.equal(rows[0], rows[1].to(rows[0].device)):
        return first, second
    common = rows[0][torch.isin(rows[0], rows[1].to(rows[0].device))]
    warnings.warn(f"Neighbourhood overlap on the {common.numel()} of {first.inputs} points that are distinct in "
                  "both representations.")
    check_overlap_k(k, common.numel())
    restricted = []
    for found, kept in zip((first, second), rows):
        position = torch.searchsorted(kept, common.to(kept.device))  # kept rows are increasing
        again = searched(found.points[position], k, chunk_size=chunk_size)  # distinct points: no rows dropped
        restricted.append(Neighbourhoods(again.points, common.to(kept.device), again.search, found.inputs))
    return restricted[0], restricted[1]
