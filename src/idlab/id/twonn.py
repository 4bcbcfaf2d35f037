"""TwoNN intrinsic dimension (Facco et al. 2017) from exact GPU/CPU neighbours, fitted by scikit-dimension."""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from skdim.id import TwoNN

from idlab.id.knn import Neighbours, check_points, default_device, knn_within, nearest_neighbours

METHODS = ("linear", "mle")


@dataclass(frozen=True)
class IDEstimate:
    """An estimate and its spread over resamples (std is None without resampling)."""

    value: float
    std: float | None = None


def check_fit_options(discard_fraction: float, method: str) -> None:
    """Reject fit options that would fail or give inf before any neighbour search runs."""
    if method not in METHODS:
        raise ValueError(f"method={method!r} is not a TwoNN fit; use one of {list(METHODS)}")
    if not 0.0 <= discard_fraction < 1.0:
        raise ValueError(f"discard_fraction={discard_fraction} must be in [0, 1); 0.1 is the usual choice")
    if discard_fraction == 0.0 and method == "linear":
        raise ValueError("discard_fraction=0 with method='linear' fits -log(0)=inf at the largest ratio; "
                         "use method='mle' or discard_fraction>0")


def fit_twonn(r1_r2: torch.Tensor | np.ndarray, discard_fraction: float = 0.1, method: str = "linear") -> float:
    """scikit-dimension's TwoNN fit on an (N, 2) array of first/second neighbour distances."""
    check_fit_options(discard_fraction, method)
    r = r1_r2.detach().cpu().double().numpy() if isinstance(r1_r2, torch.Tensor) else np.asarray(r1_r2, dtype=float)
    estimator = TwoNN(discard_fraction=discard_fraction, dist=True, method=method).fit(r)
    return float(estimator.dimension_)


def drop_duplicates(x: torch.Tensor, neighbours: Neighbours) -> torch.Tensor | None:
    """Row indices to keep (first copy of each exact duplicate), or None when there are no duplicates."""
    zero = neighbours.distances[:, 0] == 0
    if not bool(zero.any()):
        return None
    rows = torch.nonzero(zero).flatten()
    _, group = torch.unique(x[rows], dim=0, return_inverse=True)
    first = torch.full((int(group.max()) + 1,), x.shape[0], dtype=torch.long, device=x.device)
    first = first.scatter_reduce(0, group, rows, reduce="amin")
    keep = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
    keep[rows] = False
    keep[first] = True
    dropped = int((~keep).sum())
    warnings.warn(f"Dropping {dropped} exact duplicate points (keeping one copy of each); "
                  f"N {x.shape[0]} -> {x.shape[0] - dropped}.")
    return torch.nonzero(keep).flatten()


def distinct_neighbours(x: torch.Tensor, candidates: int = 10,
                        chunk_size: int | None = None) -> tuple[torch.Tensor, Neighbours]:
    """(points with exact duplicates removed, their neighbours); raises if fewer than 3 distinct points remain."""
    x = check_points(x).to(default_device(x))
    neighbours = nearest_neighbours(x, candidates=candidates, chunk_size=chunk_size)
    keep = drop_duplicates(x, neighbours)
    if keep is None:
        return x, neighbours
    x = check_points(x[keep])
    return x, nearest_neighbours(x, candidates=candidates, chunk_size=chunk_size)


def two_nearest_distances(x: torch.Tensor, chunk_size: int | None = None) -> torch.Tensor:
    """(N', 2) float64 tensor of exact (r1, r2) per distinct point: the input skdim TwoNN(dist=True) takes."""
    _, neighbours = distinct_neighbours(x, candidates=8, chunk_size=chunk_size)
    return neighbours.distances[:, :2]


def twonn(x: torch.Tensor, discard_fraction: float = 0.1, method: str = "linear",
          chunk_size: int | None = None) -> float:
    """TwoNN ID of the rows of x (N, F): exact neighbours on the GPU when there is one, skdim TwoNN's fit formulas."""
    check_fit_options(discard_fraction, method)
    r = two_nearest_distances(x, chunk_size)
    return float(fit_twonn_batched(r[None], discard_fraction, method)[0])


def twonn_bootstrap(
    x: torch.Tensor,
    n_resamples: int = 20,
    fraction: float = 0.9,
    seed: int = 0,
    discard_fraction: float = 0.1,
    method: str = "linear",
    chunk_size: int | None = None,
) -> IDEstimate:
    """Mean and std (ddof 0) of TwoNN over `n_resamples` random subsets of `fraction` of the points (Ansuini/Brown)."""
    check_fit_options(discard_fraction, method)
    if n_resamples < 1:
        raise ValueError(f"n_resamples={n_resamples} must be >= 1; use twonn() for a single estimate")
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction={fraction} must be in (0, 1]; 0.9 is Ansuini's choice")
    points, neighbours = distinct_neighbours(x, candidates=10, chunk_size=chunk_size)
    n = points.shape[0]
    size = round(fraction * n)
    if size < 3:
        raise ValueError(f"fraction={fraction} of {n} distinct points leaves {size} < 3 points per resample")
    generator = torch.Generator().manual_seed(seed)
    subsets = torch.stack([torch.randperm(n, generator=generator)[:size] for _ in range(n_resamples)])
    values = fit_twonn_batched(subsets_r1_r2(points, neighbours, subsets.to(points.device)), discard_fraction, method)
    return IDEstimate(float(values.mean()), float(values.std(correction=0)))


def fit_twonn_batched(r1_r2: torch.Tensor, discard_fraction: float = 0.1, method: str = "linear") -> torch.Tensor:
    """skdim TwoNN's fit, same formulas (tested equal), for a batch of (R, N, 2) distance sets on their device."""
    check_fit_options(discard_fraction, method)
    n = r1_r2.shape[1]
    keep = int(n * (1 - discard_fraction))
    if keep < 2:
        raise ValueError("Fewer than 2 points left to estimate the dimension.")
    log_mu = torch.sort(torch.log(r1_r2[..., 1] / r1_r2[..., 0]), dim=1).values[:, :keep]
    if method == "mle":
        return (keep - 1) / (log_mu.sum(1) + (n - keep) * log_mu[:, -1])
    f_emp = torch.arange(1, keep + 1, dtype=log_mu.dtype, device=log_mu.device) / n
    y = -torch.log1p(-f_emp)
    return (log_mu * y).sum(1) / (log_mu * log_mu).sum(1)


def subsets_r1_r2(points: torch.Tensor, neighbours: Neighbours, subsets: torch.Tensor) -> torch.Tensor:
    """(R, n, 2) exact (r1, r2) within each row of `subsets` (R, n), reusing the full set's certified neighbours."""
    resamples, size = subsets.shape
    member = torch.zeros(resamples, points.shape[0], dtype=torch.bool, device=points.device)
    member.scatter_(1, subsets, True)
    index, certified = neighbours.indices[subsets], neighbours.certified[subsets]
    columns = torch.arange(index.shape[2], device=points.device)
    usable = torch.gather(member, 1, index.reshape(resamples, -1)).reshape(index.shape)
    usable &= columns < certified[..., None]
    rank = usable.long().cumsum(2)
    first = (rank < 1).sum(2, keepdim=True).clamp_max(index.shape[2] - 1)
    second = (rank < 2).sum(2, keepdim=True).clamp_max(index.shape[2] - 1)
    dist = neighbours.distances[subsets]
    r = torch.cat([dist.gather(2, first), dist.gather(2, second)], dim=2)
    missing = rank[..., -1] < 2
    for resample in torch.nonzero(missing.any(1)).flatten().tolist():
        rows = torch.nonzero(missing[resample]).flatten()
        r[resample, rows] = knn_within(points[subsets[resample]], rows, k=2, candidates=2).distances[:, :2]
    return r
