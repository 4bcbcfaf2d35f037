"""Fastfood projection (Le et al. 2013): stacked n×n blocks S·H·G_j·Π_j·H·B, n = 2^⌈log2 d⌉, from a seed."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from idlab.adapt.subspace import hashing
from idlab.adapt.subspace.fwht import hadamard_rows
from idlab.adapt.subspace.projection import ProjectFn, Projection

MIN_BLOCK = 256
STREAM_SIGN, STREAM_GAUSS1, STREAM_GAUSS2, STREAM_PERM = 1, 2, 3, 4


@dataclass(frozen=True)
class FastfoodPlan:
    """Sizes and random-stream keys of one Fastfood projection (everything the kernels need but the scale)."""

    total: int
    d: int
    bits: int
    blocks: int
    key_sign: int
    key_gauss1: int
    key_gauss2: int
    key_perm: int

    @property
    def n(self) -> int:
        """Block size (power of two ≥ d)."""
        return 1 << self.bits

    @property
    def padded(self) -> int:
        """Rows of the stacked blocks, L = blocks·n ≥ D."""
        return self.blocks * self.n

    @classmethod
    def build(cls, total: int, d: int, seed: int, min_block: int = MIN_BLOCK) -> "FastfoodPlan":
        """Plan for P: R^d → R^total with blocks of n = max(min_block, next_pow2(d))."""
        n = max(min_block, hashing.next_pow2(d))
        keys = [hashing.stream_key(seed, s) for s in (STREAM_SIGN, STREAM_GAUSS1, STREAM_GAUSS2, STREAM_PERM)]
        return cls(total, d, n.bit_length() - 1, -(-total // n), *keys)


def input_signs(plan: FastfoodPlan, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Diagonal B (±1) of length n."""
    return hashing.signs(plan.key_sign, torch.arange(plan.n, device=device), dtype)


def gaussian_diagonal(plan: FastfoodPlan, start: int, stop: int, device: torch.device) -> torch.Tensor:
    """Entries start..stop of the stacked Gaussian diagonals G_j (float32)."""
    index = torch.arange(start, stop, device=device, dtype=torch.int64)
    return hashing.gaussians(plan.key_gauss1, plan.key_gauss2, index)


def block_permutations(plan: FastfoodPlan, device: torch.device) -> torch.Tensor:
    """Π_j as a (blocks, n) int64 table: block j reads u[Π_j(i)] at position i."""
    block = torch.arange(plan.blocks, device=device)[:, None]
    pos = torch.arange(plan.n, device=device)[None, :]
    return hashing.permute_in_block(plan.key_perm, block, pos, plan.bits)


def column_scale(plan: FastfoodPlan, device: torch.device, chunk_blocks: int = 4096) -> float:
    """1/‖column‖: full blocks give ‖col‖² = n·‖g_j‖²; the cut last block counts in proportion."""
    n, total = plan.n, 0.0
    kept_last = plan.total - (plan.blocks - 1) * n
    for first in range(0, plan.blocks, chunk_blocks):
        last = min(plan.blocks, first + chunk_blocks)
        sq = gaussian_diagonal(plan, first * n, last * n, device).double().pow(2).view(last - first, n).sum(1)
        if last == plan.blocks:
            sq[-1] *= kept_last / n
        total += float(sq.sum())
    return 1.0 / math.sqrt(n * total)


def torch_forward(theta_d: torch.Tensor, plan: FastfoodPlan, scale: float, tables: dict) -> torch.Tensor:
    """P·θ_d in plain PyTorch (CPU path and reference for the Triton kernels)."""
    x = torch.zeros(plan.n, dtype=theta_d.dtype, device=theta_d.device)
    x[: plan.d] = theta_d * tables["sign"][: plan.d]
    u = hadamard_rows(x)
    v = tables["gauss"].view(plan.blocks, plan.n) * u[tables["perm"]]
    return hadamard_rows(v).reshape(-1)[: plan.total] * scale


def torch_backward(grad: torch.Tensor, plan: FastfoodPlan, scale: float, tables: dict) -> torch.Tensor:
    """Pᵀ·grad in plain PyTorch: the exact transpose of `torch_forward`."""
    g = torch.zeros(plan.padded, dtype=grad.dtype, device=grad.device)
    g[: plan.total] = grad * scale
    z = hadamard_rows(g.view(plan.blocks, plan.n)) * tables["gauss"].view(plan.blocks, plan.n)
    y = torch.zeros_like(z).scatter_(1, tables["perm"], z).sum(0)
    return hadamard_rows(y)[: plan.d] * tables["sign"][: plan.d]


class FastfoodProjection(Projection):
    """Global Fastfood P (D×d) with unit-norm columns; Triton kernels on CUDA, PyTorch elsewhere."""

    kind = "fastfood"

    def __init__(self, total: int, d: int, seed: int, backend: str = "auto", min_block: int = MIN_BLOCK) -> None:
        super().__init__(total, d, seed)
        if backend not in ("auto", "torch", "triton"):
            raise ValueError(f"fastfood backend={backend!r}: use auto, torch or triton")
        self.backend = backend
        self.plan = FastfoodPlan.build(total, d, seed, min_block)
        self._scales: dict[str, float] = {}
        self._tables: dict[tuple, dict] = {}

    def scale(self, device: torch.device) -> float:
        """Column normaliser, computed once per device type from the regenerated diagonals."""
        key = torch.device(device).type
        if key not in self._scales:
            self._scales[key] = column_scale(self.plan, torch.device(device))
        return self._scales[key]

    def tables(self, device: torch.device, dtype: torch.dtype) -> dict:
        """B, G and Π materialised for the PyTorch path (cached per device and dtype)."""
        key = (str(device), dtype)
        if key not in self._tables:
            gauss = gaussian_diagonal(self.plan, 0, self.plan.padded, device).to(dtype)
            self._tables[key] = {"sign": input_signs(self.plan, device, dtype), "gauss": gauss,
                                 "perm": block_permutations(self.plan, device)}
        return self._tables[key]

    def apply_forward(self, theta_d: torch.Tensor, base: torch.Tensor | None) -> torch.Tensor:
        """Forward computation (no autograd)."""
        scale = self.scale(theta_d.device)
        if self.use_triton(theta_d):
            from idlab.adapt.subspace import fastfood_triton
            return fastfood_triton.forward(theta_d, base, self.plan, scale)
        delta = torch_forward(theta_d, self.plan, scale, self.tables(theta_d.device, theta_d.dtype))
        return delta if base is None else base + delta.to(base.dtype)

    def apply_backward(self, grad: torch.Tensor) -> torch.Tensor:
        """Pᵀ·grad (no autograd)."""
        scale = self.scale(grad.device)
        if self.use_triton(grad):
            from idlab.adapt.subspace import fastfood_triton
            return fastfood_triton.backward(grad, self.plan, scale)
        dtype = torch.float64 if grad.dtype == torch.float64 else torch.float32
        return torch_backward(grad.to(dtype), self.plan, scale, self.tables(grad.device, dtype))

    def forward(self, theta_d: torch.Tensor, base: torch.Tensor | None = None) -> torch.Tensor:
        """base + P·θ_d."""
        with torch.autocast(theta_d.device.type, enabled=False):
            return ProjectFn.apply(theta_d, base, self)
