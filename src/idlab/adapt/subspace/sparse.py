"""Very sparse random projection (Li, Hastie & Church 2006) with per-tensor density 1/√n_l as in Li et al. 2018.

Entries are regenerated from hashes, never stored on the GPU. Within tensor l (n_l scalars × d columns)
the longer side ("long index" x, rows when n_l ≥ d, else columns) is cut into blocks of the shorter
side's length s; long index x = q·s + p has c_x ≈ (expected entries per long index) nonzeros, the t-th in
short index (a·p + b) mod s with (a, b) drawn per (t, q) and a a unit mod s, with a random sign. Each
(t, q) is a bijection, so P·θ_d and Pᵀ·g are both gathers (walk along x over t, or along the short side
over (t, q) with a⁻¹) without atomics or waste. Columns are divided by √(entry count) (≈ unit norm; an
entry repeated within a row adds).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from idlab.adapt.subspace import hashing
from idlab.adapt.subspace.projection import ProjectFn, Projection

UNIT_TABLE = 64


@dataclass(frozen=True)
class SparseTensorPlan:
    """Layout and keys of one parameter tensor's slice of P."""

    index: int
    offset: int
    rows: int
    d: int
    key_count: int
    key_unit: int
    key_shift: int
    key_sign: int

    @property
    def rows_are_long(self) -> bool:
        """True when the tensor has at least d scalars (walk rows over t)."""
        return self.rows >= self.d

    @property
    def long(self) -> int:
        """Length of the long side."""
        return max(self.rows, self.d)

    @property
    def short(self) -> int:
        """Length of the short side (the modulus of the affine maps)."""
        return min(self.rows, self.d)

    @property
    def blocks(self) -> int:
        """Blocks of `short` long indices."""
        return -(-self.long // self.short)

    @property
    def mean_count(self) -> float:
        """Expected nonzeros per long index: short side × density 1/√n_l."""
        return self.short / max(1.0, math.sqrt(self.rows))

    @property
    def max_count(self) -> int:
        """Largest number of nonzeros of a long index."""
        return math.ceil(self.mean_count)

    @property
    def threshold(self) -> int:
        """uint32 threshold: long indices whose count hash is below it get ⌈mean⌉ entries, the rest ⌊mean⌋."""
        frac = self.mean_count - math.floor(self.mean_count)
        return int(frac * 2**32) if frac > 0 else 0


def unit_table(modulus: int, key: int) -> tuple[list[int], list[int]]:
    """UNIT_TABLE random units a mod `modulus` and their inverses."""
    if modulus == 1:
        return [0] * UNIT_TABLE, [0] * UNIT_TABLE
    units, attempt = [], 0
    while len(units) < UNIT_TABLE:
        a = hashing.hash_int(key, attempt) % modulus
        attempt += 1
        if math.gcd(a, modulus) == 1:
            units.append(a)
    return units, [pow(a, -1, modulus) for a in units]


def tensor_plans(sizes: list[int], d: int, seed: int) -> list[SparseTensorPlan]:
    """One plan per parameter tensor."""
    plans, offset = [], 0
    for index, rows in enumerate(sizes):
        keys = [hashing.stream_key(seed, 16 + 5 * index + j) for j in range(4)]
        plans.append(SparseTensorPlan(index, offset, rows, d, *keys))
        offset += rows
    return plans


def long_walk(plan: SparseTensorPlan, units: torch.Tensor, start: int, stop: int):
    """(long index, short index, sign, valid) on the grid long indices start..stop × t < max_count."""
    device = units.device
    x = torch.arange(start, stop, device=device)[:, None]
    t = torch.arange(plan.max_count, device=device)[None, :]
    q, p = x // plan.short, x % plan.short
    slots = torch.arange(plan.max_count * plan.blocks, device=device)
    a = units[hashing.hash32(plan.key_unit, slots) % UNIT_TABLE].view(plan.max_count, plan.blocks)
    b = (hashing.hash32(plan.key_shift, slots) % plan.short).view(plan.max_count, plan.blocks)
    y = (a[t, q] * p + b[t, q]) % plan.short
    count = math.floor(plan.mean_count) + (hashing.hash32(plan.key_count, x) < plan.threshold).long()
    sign = hashing.signs(plan.key_sign, x * plan.max_count + t)
    return x.expand_as(y), y, sign, t < count


def plan_entries(plan: SparseTensorPlan, units: torch.Tensor, start: int, stop: int):
    """Global (row, column, sign) of the nonzeros with long index in start..stop."""
    x, y, sign, valid = long_walk(plan, units, start, stop)
    row, col = (x, y) if plan.rows_are_long else (y, x)
    return row[valid] + plan.offset, col[valid], sign[valid]


def column_counts(plans: list[SparseTensorPlan], unit_rows: torch.Tensor, chunk: int = 1 << 22) -> torch.Tensor:
    """Number of entries in each column of P (float64, length d)."""
    d = plans[0].d
    counts = torch.zeros(d, dtype=torch.float64, device=unit_rows.device)
    for plan in plans:
        step = max(1, chunk // plan.max_count)
        for start in range(0, plan.long, step):
            _, col, _ = plan_entries(plan, unit_rows[plan.index], start, min(plan.long, start + step))
            counts += torch.bincount(col, minlength=d).double()
    return counts


class SparseProjection(Projection):
    """Very sparse P over the concatenated tensors (`sizes`): Triton gathers on CUDA, index_add elsewhere."""

    kind = "sparse"
    tensor_attrs = ("units", "inverses")

    def __init__(self, sizes: list[int], d: int, seed: int, backend: str = "auto") -> None:
        super().__init__(sum(sizes), d, seed)
        if backend not in ("auto", "torch", "triton"):
            raise ValueError(f"sparse backend={backend!r}: use auto, torch or triton")
        self.backend = backend
        self.plans = tensor_plans(list(sizes), d, seed)
        tables = [unit_table(p.short, hashing.stream_key(seed, 17 + 5 * p.index + 3)) for p in self.plans]
        self.units = torch.tensor([u for u, _ in tables], dtype=torch.int64)
        self.inverses = torch.tensor([v for _, v in tables], dtype=torch.int64)
        self._inv_norms: dict[str, torch.Tensor] = {}
        self._coo: dict[tuple, tuple] = {}

    @property
    def nonzeros(self) -> int:
        """Expected number of nonzeros of P (≈ d·Σ√n_l)."""
        return int(sum(p.mean_count * p.long for p in self.plans))

    def inv_norms(self, device: torch.device) -> torch.Tensor:
        """1/‖column‖ (float32, length d), computed once per device type."""
        key = torch.device(device).type
        if key not in self._inv_norms:
            counts = column_counts(self.plans, self.units.to(device))
            self._inv_norms[key] = counts.clamp_min(1.0).rsqrt().float()
        return self._inv_norms[key].to(device)

    def coo(self, device: torch.device, dtype: torch.dtype) -> tuple:
        """(rows, columns, values) with the column normalisation folded in (PyTorch path, cached)."""
        key = (str(device), dtype)
        if key not in self._coo:
            units = self.units.to(device)
            parts = [plan_entries(p, units[p.index], 0, p.long) for p in self.plans]
            rows, cols, signs = (torch.cat(column) for column in zip(*parts))
            self._coo[key] = (rows, cols, (signs * self.inv_norms(device)[cols]).to(dtype))
        return self._coo[key]

    def apply_forward(self, theta_d: torch.Tensor, base: torch.Tensor | None) -> torch.Tensor:
        """Forward computation (no autograd)."""
        if self.use_triton(theta_d):
            from idlab.adapt.subspace import sparse_triton
            return sparse_triton.forward(theta_d, base, self)
        rows, cols, vals = self.coo(theta_d.device, theta_d.dtype)
        delta = torch.zeros(self.total, dtype=theta_d.dtype, device=theta_d.device)
        delta.index_add_(0, rows, vals * theta_d[cols])
        return delta if base is None else base + delta.to(base.dtype)

    def apply_backward(self, grad: torch.Tensor) -> torch.Tensor:
        """Pᵀ·grad (no autograd)."""
        if self.use_triton(grad):
            from idlab.adapt.subspace import sparse_triton
            return sparse_triton.backward(grad, self)
        dtype = torch.float64 if grad.dtype == torch.float64 else torch.float32
        rows, cols, vals = self.coo(grad.device, dtype)
        out = torch.zeros(self.d, dtype=dtype, device=grad.device)
        return out.index_add_(0, cols, vals * grad.to(dtype)[rows])

    def forward(self, theta_d: torch.Tensor, base: torch.Tensor | None = None) -> torch.Tensor:
        """base + P·θ_d."""
        with torch.autocast(theta_d.device.type, enabled=False):
            return ProjectFn.apply(theta_d, base, self)
