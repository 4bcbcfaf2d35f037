"""Exact k-nearest-neighbour distances on GPU or CPU, chunked, with certified precision."""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch

_ROUNDOFF = {torch.float16: 2.0**-11, torch.float32: 2.0**-24, torch.float64: 2.0**-53}
_TF32_ROUNDOFF = 2.0**-11
_CHUNK_ELEMENTS = 2**26


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
    """Exact `candidates` nearest neighbours of every row of x (self excluded); at least k certified per row."""
    x = check_points(x)
    target = torch.device(device) if device is not None else default_device(x)
    x = x.to(target)
    positions = torch.arange(x.shape[0], device=target)
    return knn_within(x, positions, k=k, candidates=candidates, chunk_size=chunk_size)


def knn_within(
    keys: torch.Tensor, query_positions: torch.Tensor, k: int, candidates: int, chunk_size: int | None = None,
    tiers: tuple[torch.dtype, ...] | None = None,
) -> Neighbours:
    """Neighbours among `keys` (N, F) of the rows at `query_positions`, escalating precision until k are certified."""
    n_keys, features = keys.shape
    c = min(max(candidates, k), n_keys - 1)
    rows = query_positions.numel()
    dist = torch.empty(rows, c, dtype=torch.float64, device=keys.device)
    index = torch.empty(rows, c, dtype=torch.long, device=keys.device)
    certified = torch.zeros(rows, dtype=torch.long, device=keys.device)
    pending = torch.arange(rows, device=keys.device)
    step = chunk_size or max(1, _CHUNK_ELEMENTS // max(features, n_keys))
    settled: dict[str, int] = {}
    for dtype in tiers or search_dtypes(keys.device):
        if pending.numel() == 0:
            break
        space = SearchSpace(keys, dtype)
        for start in range(0, pending.numel(), step):
            slot = pending[start : start + step]
            dist[slot], index[slot], certified[slot] = space.query(query_positions[slot], c)
        unsettled = pending[certified[pending] < k]
        settled[str(dtype).removeprefix("torch.")] = pending.numel() - unsettled.numel()
        pending = unsettled
    for start in range(0, pending.numel(), step):
        slot = pending[start : start + step]
        dist[slot], index[slot] = brute_force(keys, query_positions[slot], c)
        certified[slot] = c
    settled["brute_force"] = pending.numel()
    return Neighbours(dist, index, certified, settled)


def search_dtypes(device: torch.device) -> tuple[torch.dtype, ...]:
    """Candidate-search precisions tried in order, fastest first; rows none certifies go to `brute_force`."""
    if device.type == "cuda" and fp16_matmul_with_fp32_output(device.index or 0):
        return (torch.float16, torch.float32, torch.float64)
    return (torch.float32, torch.float64)


@lru_cache(maxsize=None)
def fp16_matmul_with_fp32_output(device_index: int) -> bool:
    """Whether this torch build multiplies float16 matrices into a float32 result on the GPU."""
    a = torch.ones(2, 2, dtype=torch.float16, device=f"cuda:{device_index}")
    try:
        return torch.mm(a, a, out_dtype=torch.float32).dtype == torch.float32
    except (TypeError, RuntimeError, NotImplementedError):
        return False


def brute_force(keys: torch.Tensor, positions: torch.Tensor, c: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact c nearest keys from float64 differences to every key (slow; for rows no search tier certifies)."""
    query = keys[positions].double()
    step = max(1, _CHUNK_ELEMENTS // max(keys.shape[1], positions.numel()))
    best = torch.full((positions.numel(), 0), 0.0, dtype=torch.float64, device=keys.device)
    best_index = torch.zeros((positions.numel(), 0), dtype=torch.long, device=keys.device)
    for s in range(0, keys.shape[0], step):
        d = torch.cdist(query, keys[s : s + step].double(), compute_mode="donot_use_mm_for_euclid_dist")
        columns = torch.arange(s, s + d.shape[1], device=keys.device)
        d[columns[None, :] == positions[:, None]] = float("inf")
        best = torch.cat([best, d], dim=1)
        best_index = torch.cat([best_index, columns.expand(positions.numel(), -1)], dim=1)
        best, order = torch.topk(best, min(c, best.shape[1]), dim=1, largest=False)
        best_index = torch.gather(best_index, 1, order)
    return best, best_index


def matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b with a float32 (or float64) result; float16 inputs are multiplied exactly and summed in float32."""
    if a.dtype == torch.float16:
        return torch.mm(a, b, out_dtype=torch.float32) if a.is_cuda else a.float() @ b.float()
    return a @ b


class SearchSpace:
    """Keys rounded to one precision, with per-row rounding errors measured so candidates can be certified."""

    def __init__(self, keys: torch.Tensor, dtype: torch.dtype) -> None:
        """Centre and scale the keys by a power of two, round them to `dtype`, and bound each row's rounding error."""
        self.keys, self.dtype = keys, dtype
        work = difference_dtype(keys.dtype, dtype)
        step = max(1, _CHUNK_ELEMENTS // keys.shape[1])
        chunks = [slice(s, s + step) for s in range(0, keys.shape[0], step)]
        centre = (sum(keys[c].sum(0, dtype=torch.float64) for c in chunks) / keys.shape[0]).to(work)
        radius = float(max(torch.linalg.vector_norm(keys[c].to(work) - centre, dim=1).max() for c in chunks))
        self.scale = 2.0 ** math.floor(math.log2(64.0 / radius)) if radius > 0 else 1.0
        self.rounded = torch.empty(keys.shape, dtype=dtype, device=keys.device)
        self.error = torch.empty(keys.shape[0], dtype=torch.float64, device=keys.device)
        for c in chunks:
            centred = (keys[c].to(work) - centre) * self.scale  # correctly rounded: relative error <= roundoff(work)
            self.rounded[c] = centred.to(dtype)
            measured = torch.linalg.vector_norm(centred - self.rounded[c].to(work), dim=1, dtype=torch.float64)
            centring = 2 * _ROUNDOFF[work] * torch.linalg.vector_norm(centred, dim=1, dtype=torch.float64)
            self.error[c] = measured + centring
        self.sq_norms = torch.linalg.vector_norm(self.rounded, dim=1, dtype=torch.float64) ** 2
        self.max_norm = float(self.sq_norms.max().sqrt())
        self.max_error = float(self.error.max())
        self.product_roundoff = product_roundoff(dtype, keys.shape[1], keys.device)

    def query(self, positions: torch.Tensor, c: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Exact sorted distances, indices and certified counts of the c nearest keys of the keys at `positions`."""
        work = torch.float64 if self.dtype == torch.float64 else torch.float32
        gram = matmul(self.rounded[positions], self.rounded.T).to(work)
        approx = self.sq_norms[positions].to(work)[:, None] + self.sq_norms.to(work)[None, :] - 2 * gram
        approx[torch.arange(positions.numel(), device=positions.device), positions] = float("inf")
        values, candidates = torch.topk(approx, c, dim=1, largest=False)
        exact = exact_distances(self.keys, positions, candidates)
        exact, order = torch.sort(exact, dim=1)
        candidates = torch.gather(candidates, 1, order)
        if c >= self.keys.shape[0] - 1:
            return exact, candidates, torch.full_like(positions, c)
        norms = self.sq_norms[positions].sqrt()
        slack = self.product_roundoff * (norms + self.max_norm) ** 2
        nearest_outside = (values[:, -1].double() - slack).clamp_min(0).sqrt()
        lower = (nearest_outside - self.error[positions] - self.max_error) / self.scale
        certified = (exact <= lower[:, None]).sum(1)
        return exact, candidates, certified


def product_roundoff(dtype: torch.dtype, features: int, device: torch.device) -> float:
    """Bound on |computed − exact| of ||a||²+||b||²−2a·b, relative to (||a||+||b||)², for rounded inputs."""
    accumulate = torch.float64 if dtype == torch.float64 else torch.float32
    bound = 4 * _ROUNDOFF[accumulate] * (math.sqrt(features) + 4)
    tf32 = device.type == "cuda" and dtype == torch.float32 and torch.get_float32_matmul_precision() != "highest"
    return bound + (4 * _TF32_ROUNDOFF if tf32 else 0.0)


def difference_dtype(data: torch.dtype, search: torch.dtype) -> torch.dtype:
    """Precision in which differences of rows are formed: float64 for float64 data or search, else float32."""
    return torch.float64 if torch.float64 in (data, search) else torch.float32


def exact_distances(keys: torch.Tensor, positions: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """||x_i − x_j|| from correctly rounded differences, squares summed in float64: no cancellation."""
    work = difference_dtype(keys.dtype, keys.dtype)
    query = keys[positions].to(work)
    out = torch.empty(candidates.shape, dtype=torch.float64, device=keys.device)
    for column in range(candidates.shape[1]):
        diff = query - keys[candidates[:, column]].to(work)
        out[:, column] = (diff * diff).sum(1, dtype=torch.float64)
    return out.sqrt()
