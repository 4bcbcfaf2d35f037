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
    warnings.warn(f"Dropping {dropped} exact duplicate points (keeping one copy of each); N {x.shape[0]} -> {x.shape[0] - dropped}.")
    return torch.nonzero(keep).flatten()


def distinct_neighbours(x: torch.Tensor, candidates: int = 16, chunk_size: int | None = None) -> tuple[torch.Tensor, Neighbours]:
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


def twonn(x: torch.Tensor, discard_fraction: float = 0.1, method: str = "linear", chunk_size: int | None = None) -> float:
    """TwoNN intrinsic dimension of the rows of x (N, F), neighbours on the GPU when there is one."""
    check_fit_options(discard_fraction, method)
    return fit_twonn(two_nearest_distances(x, chunk_size), discard_fraction, method)


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
    points, neighbours = distinct_neighbours(x, candidates=16, chunk_size=chunk_size)
    n = points.shape[0]
    size = round(fraction * n)
    if size < 3:
        raise ValueError(f"fraction={fraction} of {n} distinct points leaves {size} < 3 points per resample")
    generator = torch.Generator().manual_seed(seed)
    values = [
        fit_twonn(subset_r1_r2(points, neighbours, torch.randperm(n, generator=generator)[:size]), discard_fraction, method)
        for _ in range(n_resamples)
    ]
    return IDEstimate(float(np.mean(values)), float(np.std(values)))


def subset_r1_r2(points: torch.Tensor, neighbours: Neighbours, subset: torch.Tensor) -> torch.Tensor:
    """Exact (r1, r2) within a subset, reusing the full set's certified neighbours and searching only where needed."""
    device = points.device
    subset = subset.to(device)
    member = torch.zeros(points.shape[0], dtype=torch.bool, device=device)
    member[subset] = True
    columns = torch.arange(neighbours.indices.shape[1], device=device)
    usable = member[neighbours.indices[subset]] & (columns[None, :] < neighbours.certified[subset, None])
    rank = usable.long().cumsum(1)
    found = rank[:, -1] >= 2
    first = (rank < 1).sum(1).clamp_max(rank.shape[1] - 1)
    second = (rank < 2).sum(1).clamp_max(rank.shape[1] - 1)
    dist = neighbours.distances[subset]
    r = torch.stack([dist.gather(1, first[:, None])[:, 0], dist.gather(1, second[:, None])[:, 0]], dim=1)
    missing = torch.nonzero(~found).flatten()
    if missing.numel():
        keys = points[subset]
        fallback = knn_within(keys, missing, k=2, candidates=2)
        r[missing] = fallback.distances[:, :2]
    return r
