"""Exact k-nearest-neighbour distances on GPU or CPU, chunked, with certified precision, widened per row on demand."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from idlab.id.distances import (  # noqa: F401  (SearchSpace, search_dtypes: re-exported for callers)
    CHUNK_ELEMENTS, SearchSpace, brute_force, certified_count, exact_distances, search_dtypes,
)

WIDEST = 32
SYMMETRIC_FEATURES = 2048  # from this many features, a self-search ranks candidates from half the Gram matrix
SYMMETRIC_BLOCK = 2048
BRUTE_ROWS = 8  # this few uncertified rows cost less by brute force than by a new precision tier


@dataclass(frozen=True)
class Neighbours:
    """Sorted exact distances (N, c) and indices (N, c); the first `certified[i]` columns of row i are exact."""

    distances: torch.Tensor
    indices: torch.Tensor
    certified: torch.Tensor
    tiers: dict[str, int] | None = None  # rows settled by each search precision (and by brute force)


def default_device(x: torch.Tensor) -> torch.device:
    """The GPU when there is one, else the tensor's own device."""
    if x.device.type == "cpu" and torch.cuda.is_available():
        return torch.device("cuda")
    return x.device


def check_points(x: torch.Tensor, min_points: int = 3) -> torch.Tensor:
    """Validate an (N, ...) point cloud and return it flattened to (N, F) floating point."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"expected a torch.Tensor of points, got {type(x).__name__}; wrap arrays with torch.as_tensor")
    if x.ndim < 2:
        raise ValueError(f"expected points of shape (N, F), got shape {tuple(x.shape)}; "
                         "use x.reshape(-1, 1) for 1-D data")
    if x.shape[0] < min_points:
        raise ValueError(f"need at least {min_points} points to find two neighbours each, got N={x.shape[0]}")
    x = x.reshape(x.shape[0], -1)
    if not x.is_floating_point():
        x = x.double()
    if not bool(torch.isfinite(x).all()):
        raise ValueError("points contain NaN or inf values; drop or fix those rows before estimating the ID")
    return x


def nearest_neighbours(
    x: torch.Tensor, k: int = 2, candidates: int = 16, chunk_size: int | None = None, device: str | None = None
) -> Neighbours:
    """Exact nearest neighbours of every row of x (self excluded), >= `candidates` per row, >= k certified."""
    x = check_points(x)
    target = torch.device(device) if device is not None else default_device(x)
    x = x.to(target).contiguous()
    return knn_within(x, torch.arange(x.shape[0], device=target), k=k, candidates=candidates, chunk_size=chunk_size)


def knn_within(
    keys: torch.Tensor, query_positions: torch.Tensor, k: int, candidates: int, chunk_size: int | None = None,
    tiers: tuple[torch.dtype, ...] | None = None,
) -> Neighbours:
    """Neighbours among `keys` (N, F) of the rows at `query_positions`, widened and escalated until k are certified."""
    search = NeighbourSearch(keys, query_positions, candidates, max(candidates, WIDEST), chunk_size, tiers)
    search.settle(k)
    return search.neighbours()


class NeighbourSearch:
    """Exact neighbours: c fast candidates per row, more candidates where a row needs them, then more precision.

    Each precision tier ranks `widest` + 1 candidates per row by the fast formula once; exact distances are
    computed for the first c, and for rows that need more (`widen`) for 2c, 4c, … up to `widest`. Row i's first
    `certified[i]` exact neighbours are certified by the (w+1)-th candidate's approximate distance.
    """

    def __init__(self, keys: torch.Tensor, positions: torch.Tensor, candidates: int = 8, widest: int = WIDEST,
                 chunk_size: int | None = None, tiers: tuple[torch.dtype, ...] | None = None) -> None:
        """Set up (nothing is searched until `settle`)."""
        n, features = keys.shape
        self.keys, self.positions, self.n = keys, positions, n
        self.first = min(max(candidates, 1), n - 1)
        self.widest = min(max(widest, self.first), n - 1)
        self.columns = min(self.widest + 1, n - 1)
        self.step = chunk_size or max(1, CHUNK_ELEMENTS // max(features, n))
        self.tiers = tiers or search_dtypes(keys.device)
        self.spaces: dict[int, SearchSpace] = {}
        rows, device = positions.numel(), keys.device
        self.dist = torch.full((rows, self.widest), float("inf"), dtype=torch.float64, device=device)
        self.index = torch.zeros((rows, self.widest), dtype=torch.long, device=device)
        self.certified = torch.zeros(rows, dtype=torch.long, device=device)
        self.width = torch.zeros(rows, dtype=torch.long, device=device)
        self.tier = torch.zeros(rows, dtype=torch.long, device=device)
        self.approx_values = torch.empty((rows, self.columns), dtype=torch.float64, device=device)
        self.approx_index = torch.empty((rows, self.columns), dtype=torch.long, device=device)
        self.rows = torch.arange(rows, device=device)
        self.symmetric = rows == n and features >= SYMMETRIC_FEATURES and bool(torch.equal(positions, self.rows))
        self.reached: list[str] = []

    def settle(self, k: int) -> None:
        """Certify >= k neighbours of every row: widen in each precision tier, then brute-force the rest."""
        pending = self.rows
        for tier in range(len(self.tiers)):
            if tier > 0:
                pending = pending[self.certified[pending] < k]
                if pending.numel() <= BRUTE_ROWS:
                    break
            self.start_tier(tier, pending)
            self.widen(lambda rows: self.certified[rows] < k, pending)
        pending = pending[self.certified[pending] < k]
        self.reached.append("brute_force")
        for start in range(0, pending.numel(), self.step):
            rows = pending[start : start + self.step]
            dist, index = brute_force(self.keys, self.positions[rows], self.widest)
            self.dist[rows], self.index[rows] = dist, index
            self.certified[rows] = self.width[rows] = self.widest
            self.tier[rows] = len(self.tiers)

    def start_tier(self, tier: int, rows: torch.Tensor) -> None:
        """Rank candidates for `rows` in one precision and compute exact distances for the first c."""
        dtype = self.tiers[tier]
        self.reached.append(str(dtype).removeprefix("torch."))
        space = self.spaces.setdefault(tier, SearchSpace(self.keys, dtype))
        if self.symmetric and rows.numel() == self.n:  # every row, in order
            values, index = space.all_pairs(self.columns, SYMMETRIC_BLOCK)
            self.approx_values[rows], self.approx_index[rows] = values.double(), index
        else:
            for start in range(0, rows.numel(), self.step):
                chunk = rows[start : start + self.step]
                values, index = space.approximate(self.positions[chunk], self.columns)
                self.approx_values[chunk], self.approx_index[chunk] = values.double(), index
        self.dist[rows], self.width[rows], self.tier[rows] = float("inf"), 0, tier
        self.extend(rows, tier, 0, self.first)

    def extend(self, rows: torch.Tensor, tier: int, width: int, new_width: int) -> None:
        """Exact distances of candidates width..new_width of rows at that width in `tier`, merged and re-certified."""
        fresh = self.approx_index[rows, width:new_width]
        dist = torch.cat([self.dist[rows, :width], exact_distances(self.keys, self.positions[rows], fresh)], dim=1)
        dist, order = torch.sort(dist, dim=1)
        index = torch.gather(torch.cat([self.index[rows, :width], fresh], dim=1), 1, order)
        self.dist[rows, :new_width], self.index[rows, :new_width], self.width[rows] = dist, index, new_width
        if new_width >= self.n - 1:
            self.certified[rows] = new_width
            return
        lower = self.spaces[tier].lower_bounds(self.positions[rows], self.approx_values[rows, new_width])
        self.certified[rows] = certified_count(dist, lower)

    def widen(self, need: Callable[[torch.Tensor], torch.Tensor], rows: torch.Tensor | None = None) -> None:
        """Double the exact candidates of rows for which `need(rows)` holds, up to `widest` (no new precision)."""
        pending = self.rows if rows is None else rows
        pending = pending[need(pending)]
        while pending.numel():
            pending = pending[(self.width[pending] < self.widest) & (self.tier[pending] < len(self.tiers))]
            if pending.numel() == 0:
                return
            key = self.tier[pending] * (self.widest + 1) + self.width[pending]
            lowest = int(key.min())
            tier, width = divmod(lowest, self.widest + 1)
            self.extend(pending[key == lowest], tier, width, min(2 * width, self.widest))
            pending = pending[need(pending)]

    def neighbours(self) -> Neighbours:
        """The current lists: columns beyond a row's computed ones hold inf (never certified)."""
        width = int(self.width.max()) if self.width.numel() else 0
        counts = torch.bincount(self.tier, minlength=len(self.tiers) + 1).tolist()
        names = [str(d).removeprefix("torch.") for d in self.tiers] + ["brute_force"]
        tiers = {name: counts[i] for i, name in enumerate(names) if name in self.reached or name == "brute_force"}
        return Neighbours(self.dist[:, :width], self.index[:, :width], self.certified, tiers)
