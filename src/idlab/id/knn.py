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
        raise ValueError(f"expected points of shape (N, F), got shape {tuple(x.shape)}; use x.reshape(-1, 1) for 1-D data")
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
    keys: torch.Tensor, query_positions: torch.Tensor, k: int, candidates: int, chunk_size: int | None = None
) -> Neighbours:
    """Neighbours among `keys` (N, F) of the rows at `query_positions`, escalating precision until k are certified."""
    n_keys, features = keys.shape
    c = min(max(candidates, k), n_keys - 1)
    rows = query_positions.numel()
    dist = torch.empty(rows, c, dtype=torch.float64, device=keys.device)
    index = torch.empty(rows, c, dtype=torch.long, device=keys.device)
    certified = torch.zeros(rows, dtype=torch.long, device=keys.device)
    pending = torch.arange(rows, device=keys.device)
    tiers = search_dtypes(keys.device)
    for tier_number, dtype in enumerate(tiers):
        if pending.numel() == 0:
            break
        space = SearchSpace(keys, dtype)
        step = chunk_size or max(1, _CHUNK_ELEMENTS // max(features, n_keys))
        for start in range(0, pending.numel(), step):
            slot = pending[start : start + step]
            d, i, cert = space.query(query_positions[slot], c)
            dist[slot], index[slot], certified[slot] = d, i, cert
        if tier_number < len(tiers) - 1:
            pending = pending[certified[pending] < k]
    last = tiers[-1]
    if last == torch.float64:
        certified = torch.maximum(certified, torch.full_like(certified, k))
    return Neighbours(dist, index, certified)


def search_dtypes(device: torch.device) -> tuple[torch.dtype, ...]:
    """Candidate-search precisions tried in order: fast first, float64 last (always accepted)."""
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


def matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b with a float32 (or float64) result whatever the input precision."""
    if a.dtype == torch.float16:
        return torch.mm(a, b, out_dtype=torch.float32)
    return a @ b


class SearchSpace:
    """Keys rounded to one precision, with per-row rounding errors measured so candidates can be certified."""

    def __init__(self, keys: torch.Tensor, dtype: torch.dtype) -> None:
        """Centre and scale the keys by a power of two, round them to `dtype`, and measure each row's rounding error."""
        self.keys = keys
        self.dtype = dtype
        centre = keys.double().mean(0) if keys.shape[0] * keys.shape[1] <= _CHUNK_ELEMENTS else chunked_mean(keys)
        radius = float(max_row_norm(keys, centre))
        self.scale = 2.0 ** math.floor(math.log2(64.0 / radius)) if radius > 0 else 1.0
        self.rounded = torch.empty(keys.shape, dtype=dtype, device=keys.device)
        self.error = torch.empty(keys.shape[0], dtype=torch.float64, device=keys.device)
        step = max(1, _CHUNK_ELEMENTS // keys.shape[1])
        for s in range(0, keys.shape[0], step):
            exact = (keys[s : s + step].double() - centre) * self.scale
            self.rounded[s : s + step] = exact.to(dtype)
            self.error[s : s + step] = torch.linalg.vector_norm(exact - self.rounded[s : s + step].double(), dim=1)
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


def exact_distances(keys: torch.Tensor, positions: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """||x_i − x_j|| in float64 from differences (no cancellation) for each row i and its candidate columns j."""
    query = keys[positions].double()
    out = torch.empty(candidates.shape, dtype=torch.float64, device=keys.device)
    for column in range(candidates.shape[1]):
        out[:, column] = torch.linalg.vector_norm(query - keys[candidates[:, column]].double(), dim=1)
    return out


def chunked_mean(x: torch.Tensor) -> torch.Tensor:
    """Float64 column mean of a large matrix without a full float64 copy."""
    step = max(1, _CHUNK_ELEMENTS // x.shape[1])
    total = torch.zeros(x.shape[1], dtype=torch.float64, device=x.device)
    for s in range(0, x.shape[0], step):
        total += x[s : s + step].double().sum(0)
    return total / x.shape[0]


def max_row_norm(x: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
    """Largest float64 norm of a row of x − centre, computed in chunks."""
    step = max(1, _CHUNK_ELEMENTS // x.shape[1])
    return max(torch.linalg.vector_norm(x[s : s + step].double() - centre, dim=1).max() for s in range(0, x.shape[0], step))
