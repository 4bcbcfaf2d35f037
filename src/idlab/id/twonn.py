"""TwoNN intrinsic dimension (Facco et al. 2017) from exact GPU/CPU neighbours, fitted by scikit-dimension."""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from skdim.id import TwoNN

from idlab.id.distances import exact_distances
from idlab.id.knn import WIDEST, Neighbours, NeighbourSearch, check_points, default_device

METHODS = ("linear", "mle")


@dataclass(frozen=True)
class IDEstimate:
    """An estimate and its spread: std over resamples (TwoNN bootstrap; None without resampling) or GRIDE's
    standard error."""

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


@dataclass(frozen=True)
class Neighbourhoods:
    """Distinct points (exact duplicates collapsed) on the search device, their input rows, their exact search.

    One search serves every neighbour-based measure of a point cloud (TwoNN, GRIDE at every scale, neighbourhood
    overlap): the first `k` neighbours of every point are certified exact; measures that need more widen it.
    """

    points: torch.Tensor
    rows: torch.Tensor | None  # input row of each distinct point; None when nothing was dropped
    search: NeighbourSearch
    inputs: int  # number of input rows

    def neighbours(self) -> Neighbours:
        """The current sorted exact lists (columns below `certified[i]` are exact for row i)."""
        return self.search.neighbours()

    def select(self, values: torch.Tensor) -> torch.Tensor:
        """Per-input-row values (e.g. labels), restricted to the distinct points, on the search device."""
        values = values.to(self.points.device)
        return values if self.rows is None else values[self.rows]


def distinct_search(x: torch.Tensor, k: int = 2, candidates: int | None = None,
                    chunk_size: int | None = None) -> Neighbourhoods:
    """Exact search of the distinct rows of x with >= k certified neighbours each; searches twice if duplicates.

    `candidates` exact distances are computed per row at first (default k + max(2, k // 4)); rows that need more
    are widened up to max(32, 2k) before a more precise tier is tried. Fewer than k + 1 distinct points is an error.
    """
    x = check_points(x).to(default_device(x)).contiguous()
    inputs = x.shape[0]
    check_neighbour_count(k, inputs)
    candidates = candidates or k + max(2, k // 4)

    def search_all(points: torch.Tensor) -> NeighbourSearch:
        search = NeighbourSearch(points, torch.arange(points.shape[0], device=points.device), max(candidates, k),
                                 max(WIDEST, 2 * k), chunk_size=chunk_size)
        search.settle(k)
        return search

    search = search_all(x)
    keep = drop_duplicates(x, search.neighbours())
    if keep is None:
        return Neighbourhoods(x, None, search, inputs)
    x = check_points(x[keep])
    check_neighbour_count(k, x.shape[0], distinct=True)
    return Neighbourhoods(x, keep, search_all(x), inputs)


def check_neighbour_count(k: int, n: int, distinct: bool = False) -> None:
    """Reject a neighbour count the points cannot supply (each point has n - 1 others)."""
    if n < max(3, k + 1):
        kind = "distinct points (exact duplicates collapsed)" if distinct else "points"
        raise ValueError(f"{n} {kind} cannot give {k} neighbours each: need at least {max(3, k + 1)}")


def distinct_neighbours(x: torch.Tensor, candidates: int = 10,
                        chunk_size: int | None = None) -> tuple[torch.Tensor, Neighbours]:
    """(points with exact duplicates removed, their neighbours); raises if fewer than 3 distinct points remain."""
    found = distinct_search(x, candidates=candidates, chunk_size=chunk_size)
    return found.points, found.neighbours()


def within_subsets(points: torch.Tensor, search: NeighbourSearch, subsets: torch.Tensor) -> torch.Tensor:
    """(R, n, 2) exact (r1, r2) within each row of `subsets` (R, n), widening rows that lack two members first."""
    member = torch.zeros(subsets.shape[0], points.shape[0], dtype=torch.bool, device=points.device)
    member.scatter_(1, subsets, True)

    def lacks_two(rows: torch.Tensor) -> torch.Tensor:
        columns = torch.arange(search.widest, device=rows.device)
        usable = member[:, search.index[rows]] & (columns < search.certified[rows, None])
        return (member[:, rows] & (usable.sum(2) < 2)).any(0)

    search.widen(lacks_two)
    return subsets_r1_r2(points, search.neighbours(), subsets)


def searched(x: torch.Tensor | Neighbourhoods, k: int, candidates: int | None = None,
             chunk_size: int | None = None) -> Neighbourhoods:
    """x's distinct-point search with >= k certified neighbours: x itself when it is one (settled further if needed)."""
    if not isinstance(x, Neighbourhoods):
        return distinct_search(x, k, candidates, chunk_size)
    check_neighbour_count(k, x.points.shape[0], distinct=x.rows is not None)
    if x.search.widest < k:
        raise ValueError(f"this search keeps at most {x.search.widest} neighbours per point, {k} were asked for; "
                         f"search again with distinct_search(x, k={k})")
    x.search.widen(lambda rows: x.search.certified[rows] < k)
    if bool((x.search.certified < k).any()):  # widening was not enough: search every row again at more precision
        x.search.settle(k)
    return x


def two_nearest_distances(x: torch.Tensor | Neighbourhoods, chunk_size: int | None = None) -> torch.Tensor:
    """(N', 2) float64 tensor of exact (r1, r2) per distinct point: the input skdim TwoNN(dist=True) takes."""
    return searched(x, 2, 4, chunk_size).neighbours().distances[:, :2]


def twonn(x: torch.Tensor | Neighbourhoods, discard_fraction: float = 0.1, method: str = "linear",
          chunk_size: int | None = None) -> float:
    """TwoNN ID of the rows of x (N, F): exact neighbours on the GPU when there is one, skdim TwoNN's fit formulas.

    x may also be a `distinct_search` result, whose neighbours are then reused.
    """
    check_fit_options(discard_fraction, method)
    r = two_nearest_distances(x, chunk_size)
    return float(fit_twonn_batched(r[None], discard_fraction, method)[0])


def check_fraction(fraction: float) -> None:
    """Reject a resampling fraction outside (0, 1]."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction={fraction} must be in (0, 1]; 0.9 is Ansuini's choice")


def twonn_bootstrap(
    x: torch.Tensor | Neighbourhoods,
    n_resamples: int = 20,
    fraction: float = 0.9,
    seed: int = 0,
    discard_fraction: float = 0.1,
    method: str = "linear",
    chunk_size: int | None = None,
) -> IDEstimate:
    """Mean and std (ddof 0) of TwoNN over `n_resamples` random subsets of `fraction` of the points (Ansuini/Brown).

    x may also be a `distinct_search` result, whose neighbours are then reused (and widened where a subset needs).
    """
    check_fit_options(discard_fraction, method)
    if n_resamples < 1:
        raise ValueError(f"n_resamples={n_resamples} must be >= 1; use twonn() for a single estimate")
    check_fraction(fraction)
    found = searched(x, 2, 6, chunk_size)
    points, search = found.points, found.search
    n = points.shape[0]
    size = round(fraction * n)
    if size < 3:
        raise ValueError(f"fraction={fraction} of {n} distinct points leaves {size} < 3 points per resample")
    generator = torch.Generator().manual_seed(seed)
    subsets = torch.stack([torch.randperm(n, generator=generator)[:size] for _ in range(n_resamples)])
    r = within_subsets(points, search, subsets.to(points.device))
    values = fit_twonn_batched(r, discard_fraction, method)
    mean, std = torch.stack([values.mean(), values.std(correction=0)]).tolist()
    return IDEstimate(mean, std)


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
        r[resample, rows] = nearest_two_members(points, subsets[resample][rows], subsets[resample])
    return r


def nearest_two_members(points: torch.Tensor, queries: torch.Tensor, members: torch.Tensor) -> torch.Tensor:
    """(q, 2) exact distances from points[queries] to their two nearest points[members] (themselves excluded)."""
    out = torch.empty((queries.numel(), 2), dtype=torch.float64, device=points.device)
    step = max(1, 2**24 // members.numel())
    for start in range(0, queries.numel(), step):
        rows = queries[start : start + step]
        d = exact_distances(points, rows, members.expand(rows.numel(), -1))
        d[members[None, :] == rows[:, None]] = float("inf")
        out[start : start + step] = torch.topk(d, 2, dim=1, largest=False).values
    return out
