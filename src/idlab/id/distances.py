"""Distance primitives of the exact neighbour search: rounded search spaces with error bounds, exact distances."""
from __future__ import annotations

import math
from functools import lru_cache

import torch

from idlab.id import knn_triton

_ROUNDOFF = {torch.float16: 2.0**-11, torch.float32: 2.0**-24, torch.float64: 2.0**-53}
_TF32_ROUNDOFF = 2.0**-11
CHUNK_ELEMENTS = 2**26
_PAIR_ELEMENTS = 2**24


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


def matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b with a float32 (or float64) result; float16 inputs are multiplied exactly and summed in float32."""
    if a.dtype == torch.float16:
        return torch.mm(a, b, out_dtype=torch.float32) if a.is_cuda else a.float() @ b.float()
    return a @ b


def difference_dtype(data: torch.dtype, search: torch.dtype) -> torch.dtype:
    """Precision in which differences of rows are formed: float64 for float64 data or search, else float32."""
    return torch.float64 if torch.float64 in (data, search) else torch.float32


def product_roundoff(dtype: torch.dtype, features: int, device: torch.device) -> float:
    """Bound on |computed − exact| of ||a||²+||b||²−2a·b, relative to (||a||+||b||)², for rounded inputs."""
    accumulate = torch.float64 if dtype == torch.float64 else torch.float32
    bound = 4 * _ROUNDOFF[accumulate] * (math.sqrt(features) + 4)
    tf32 = device.type == "cuda" and dtype == torch.float32 and torch.get_float32_matmul_precision() != "highest"
    return bound + (4 * _TF32_ROUNDOFF if tf32 else 0.0)


def exact_distances(keys: torch.Tensor, positions: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """||x_i − x_j|| (rows, c) from correctly rounded differences, squares summed in float64: no cancellation."""
    if knn_triton.usable(keys):
        return knn_triton.pair_squared_distances(keys, positions, candidates).sqrt()
    work = difference_dtype(keys.dtype, keys.dtype)
    rows, count = candidates.shape
    out = torch.empty((rows, count), dtype=torch.float64, device=keys.device)
    block = max(1, _PAIR_ELEMENTS // max(1, count * keys.shape[1]))
    for start in range(0, rows if count else 0, block):
        diff = keys[candidates[start : start + block]].to(work)
        diff -= keys[positions[start : start + block]].to(work)[:, None]
        diff *= diff
        out[start : start + block] = diff.sum(2, dtype=torch.float64)
    return out.sqrt()


def brute_force(keys: torch.Tensor, positions: torch.Tensor, c: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact sorted c nearest keys (self excluded) from `exact_distances` to every key (slow; the last resort)."""
    rows, n = positions.numel(), keys.shape[0]
    best = torch.empty((rows, 0), dtype=torch.float64, device=keys.device)
    best_index = torch.empty((rows, 0), dtype=torch.long, device=keys.device)
    step = max(1, CHUNK_ELEMENTS // max(keys.shape[1], rows))
    for s in range(0, n, step):
        columns = torch.arange(s, min(s + step, n), device=keys.device).expand(rows, -1)
        d = exact_distances(keys, positions, columns)
        d[columns == positions[:, None]] = float("inf")
        best, best_index = torch.cat([best, d], dim=1), torch.cat([best_index, columns], dim=1)
        best, order = torch.topk(best, min(c, best.shape[1]), dim=1, largest=False)
        best_index = torch.gather(best_index, 1, order)
    return best, best_index


class SearchSpace:
    """Keys rounded to one precision, with per-row rounding errors measured so candidates can be certified."""

    def __init__(self, keys: torch.Tensor, dtype: torch.dtype) -> None:
        """Centre and scale the keys by a power of two, round them to `dtype`, and bound each row's rounding error."""
        self.keys, self.dtype = keys, dtype
        work = difference_dtype(keys.dtype, dtype)
        centre = keys.mean(0, dtype=work)
        if dtype == torch.float16 and knn_triton.usable(keys):
            self.rounded = torch.empty(keys.shape, dtype=dtype, device=keys.device)
            radius = float(knn_triton.centre_and_round(keys, centre, 1.0)[:, 0].max().sqrt())
            self.scale = power_of_two_scale(radius)
            stats = knn_triton.centre_and_round(keys, centre, self.scale, self.rounded)
            self.error = stats[:, 1].sqrt() + 2 * _ROUNDOFF[work] * stats[:, 0].sqrt()
            self.sq_norms = stats[:, 2]
        else:
            self.round_chunks(centre, work)
        # Rounding errors relative to the rounded norm (they scale with it), and those of keys rounded to zero.
        norms = self.sq_norms.double().sqrt()
        error = self.error.double()
        ratio = torch.where(norms > 0, error / norms.clamp_min(torch.finfo(torch.float64).tiny), 0.0)
        self.max_norm, self.max_error, self.relative_error, self.zero_error = torch.stack(
            [norms.max(), error.max(), ratio.max(), torch.where(norms > 0, 0.0, error).max()]).tolist()
        self.product_roundoff = product_roundoff(dtype, keys.shape[1], keys.device)

    def round_chunks(self, centre: torch.Tensor, work: torch.dtype) -> None:
        """The PyTorch path of the constructor: centred rows rounded and error-bounded chunk by chunk."""
        keys, dtype = self.keys, self.dtype
        step = max(1, CHUNK_ELEMENTS // keys.shape[1])
        chunks = [slice(s, s + step) for s in range(0, keys.shape[0], step)]
        radius = float(max(torch.linalg.vector_norm(keys[c].to(work) - centre, dim=1).max() for c in chunks))
        self.scale = power_of_two_scale(radius)
        self.rounded = torch.empty(keys.shape, dtype=dtype, device=keys.device)
        self.error = torch.empty(keys.shape[0], dtype=torch.float64, device=keys.device)
        for c in chunks:
            centred = (keys[c].to(work) - centre) * self.scale  # correctly rounded: relative error <= roundoff(work)
            self.rounded[c] = centred.to(dtype)
            measured = torch.linalg.vector_norm(centred - self.rounded[c].to(work), dim=1, dtype=torch.float64)
            centring = 2 * _ROUNDOFF[work] * torch.linalg.vector_norm(centred, dim=1, dtype=torch.float64)
            self.error[c] = measured + centring
        self.sq_norms = torch.linalg.vector_norm(self.rounded, dim=1, dtype=torch.float64) ** 2

    def approximate(self, positions: torch.Tensor, c: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Sorted approximate squared distances (scaled) and indices of the c nearest keys by the fast formula."""
        work = torch.float64 if self.dtype == torch.float64 else torch.float32
        gram = matmul(self.rounded[positions], self.rounded.T).to(work)
        approx = self.sq_norms[positions].to(work)[:, None] + self.sq_norms.to(work)[None, :] - 2 * gram
        approx[torch.arange(positions.numel(), device=positions.device), positions] = float("inf")
        return torch.topk(approx, c, dim=1, largest=False)

    def all_pairs(self, c: int, block: int) -> tuple[torch.Tensor, torch.Tensor]:
        """`approximate` for every key at once: each block product ranks candidates for its rows and its columns."""
        n, work = self.keys.shape[0], torch.float64 if self.dtype == torch.float64 else torch.float32
        values = torch.full((n, c), float("inf"), dtype=work, device=self.keys.device)
        index = torch.zeros((n, c), dtype=torch.long, device=self.keys.device)
        starts = range(0, n, block)
        for a in starts:
            rows = slice(a, min(a + block, n))
            for b in (s for s in starts if s >= a):
                cols = slice(b, min(b + block, n))
                gram = matmul(self.rounded[rows], self.rounded[cols].T).to(work)
                approx = self.sq_norms[rows].to(work)[:, None] + self.sq_norms[cols].to(work)[None, :] - 2 * gram
                if a == b:
                    approx.fill_diagonal_(float("inf"))
                merge_candidates(values, index, rows, approx, b)
                if a != b:
                    merge_candidates(values, index, cols, approx.T, a)
        return values, index

    def lower_bounds(self, positions: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """Per row, a lower bound on the exact distance to every key whose approximate value is >= `values`.

        The better of two bounds. Against any key: the Gram error for the farthest key's norm and its rounding
        error. Against the keys that can matter: a key farther from the centre than reach = ||a|| + sqrt(value) is
        farther than sqrt(value) from row a anyway (triangle inequality), so the Gram error and the rounding error
        need bounding only for norms up to reach. The second is the tight one where the rows crowd near the centre
        and a few keys lie far out (trained networks' deep layers): one far key no longer sets everyone's error.
        """
        norms = self.sq_norms[positions].double().sqrt()
        value = values.double()
        slack = self.product_roundoff * (norms + self.max_norm) ** 2
        bound = (value - slack).clamp_min(0).sqrt() - self.max_error  # against any key
        if self.relative_error < 1:  # against keys within reach (a key's error <= relative_error·norm + zero_error)
            reach = norms + value.clamp_min(0).sqrt()
            near = ((value - self.product_roundoff * (norms + reach) ** 2).clamp_min(0).sqrt()
                    - self.relative_error * reach - self.zero_error)
            bound = torch.where(torch.isfinite(value), torch.maximum(bound, near), bound)
        return (bound - self.error[positions]) / self.scale

    def query(self, positions: torch.Tensor, c: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Exact sorted distances, indices and certified counts of the c nearest keys of the keys at `positions`."""
        n = self.keys.shape[0]
        values, candidates = self.approximate(positions, min(c + 1, n - 1))
        exact, order = torch.sort(exact_distances(self.keys, positions, candidates[:, :c]), dim=1)
        candidates = torch.gather(candidates[:, :c], 1, order)
        if c >= n - 1:
            return exact, candidates, torch.full_like(positions, c)
        return exact, candidates, certified_count(exact, self.lower_bounds(positions, values[:, c]))


def merge_candidates(values: torch.Tensor, index: torch.Tensor, rows: slice, approx: torch.Tensor, first: int) -> None:
    """Fold approximate values of keys first, first+1, … (columns of `approx`) into the rows' sorted best lists."""
    c = values.shape[1]
    merged, order = torch.topk(torch.cat([values[rows], approx], dim=1), c, dim=1, largest=False)
    kept = torch.gather(index[rows], 1, order.clamp_max(c - 1))
    values[rows], index[rows] = merged, torch.where(order < c, kept, order - c + first)


def certified_count(exact: torch.Tensor, lower: torch.Tensor) -> torch.Tensor:
    """Leading sorted exact distances no key outside them can beat: those within the bound, and zeros (duplicates)."""
    return torch.maximum((exact <= lower[:, None]).sum(1), (exact == 0).sum(1))


def power_of_two_scale(radius: float) -> float:
    """The power of two that brings the largest centred row norm to (32, 64]: fp16-safe, exact to apply."""
    return 2.0 ** math.floor(math.log2(64.0 / radius)) if radius > 0 else 1.0
