"""Triton kernels for Fastfood: each pass applies one Kronecker factor of H_n as a ±1 `tl.dot` on a tile.

H_n = H_{2^a} ⊗ H_{2^b} ⊗ …: the first pass transforms the low 8–12 bits of every block with H·X·H on a
(2^⌊k/2⌋, 2^⌈k/2⌉) tile, the next passes the higher bits, each one read and one write of the L = blocks·n
floats. Gathers by Π_j, the Gaussian G_j, the signs B, the column scale and θ0 are fused into the first
and last pass and regenerated from hashes, so nothing of size D is stored besides the working buffer.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import torch

try:
    import triton
    import triton.language as tl

    from idlab.adapt.subspace import triton_hash as th
except ImportError:  # pragma: no cover - Triton ships with CUDA builds of torch
    triton = None

INNER_BITS = 12
OUTER_TILE = 64
PRECISION = "ieee"  # fp32 FMA products: exact for ±1 factors ("tf32x3" uses tensor cores, ~1e-7 off)
FUSED_SUM_BLOCKS = 16
PRO_LOAD, PRO_GATHER, PRO_GRAD, PRO_SIGNED, PRO_SUM = 0, 1, 2, 3, 4
EPI_STORE, EPI_OUTPUT, EPI_SCATTER, EPI_SIGNED = 0, 1, 2, 3


def available() -> bool:
    """Triton importable and a GPU (or the CPU interpreter, TRITON_INTERPRET=1) to run it."""
    return triton is not None and (torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1")


@dataclass(frozen=True)
class Pass:
    """One kernel launch: H_{k1} (⊗ H_{k2}) on tiles of k1×k2 elements with row stride `stride`."""

    k1: int
    k2: int
    stride: int
    both: bool

    def grid(self, length: int) -> int:
        """Number of programs for a buffer of `length` elements."""
        return length // (self.k1 * self.k2)


def plan_passes(bits: int, inner_bits: int | None = None, outer_tile: int | None = None) -> list[Pass]:
    """Kronecker passes covering log2(n) = bits ≥ 8: one inner pass of 8..inner_bits bits, outer passes of 4..7."""
    return _plan_passes(bits, inner_bits or INNER_BITS, outer_tile or OUTER_TILE)


@functools.lru_cache(maxsize=None)
def _plan_passes(bits: int, inner_bits: int, outer_tile: int) -> list[Pass]:
    """Cached body of `plan_passes`."""
    if bits < 8 or not 12 <= inner_bits <= 14:
        raise ValueError(f"Kronecker plan needs bits ≥ 8 and inner_bits in 12..14, got {bits}, {inner_bits}")
    inner = min(bits, inner_bits)
    rest = bits - inner
    if 0 < rest < 4:
        inner, rest = bits - 4, 4
    half = inner // 2
    passes = [Pass(1 << half, 1 << (inner - half), 1 << (inner - half), True)]
    parts = -(-rest // 7) if rest else 0
    low = inner
    for i in range(parts):
        width = rest // parts + (1 if i < rest % parts else 0)
        passes.append(Pass(1 << width, min(outer_tile, 1 << low), 1 << low, False))
        low += width
    return passes


if triton is not None:

    @triton.jit
    def _hadamard(K: tl.constexpr):
        """Sylvester H_K (K ≤ 256) as a float32 tile."""
        p = tl.arange(0, K)[:, None] & tl.arange(0, K)[None, :]
        p = p ^ (p >> 4)
        p = p ^ (p >> 2)
        p = p ^ (p >> 1)
        return 1.0 - 2.0 * (p & 1).to(tl.float32)

    @triton.jit
    def _pass_kernel(src, dst, base, stride, tiles_per_row, total, d, blocks, scale,
                     key_sign, key_g1, key_g2, key_perm,
                     K1: tl.constexpr, K2: tl.constexpr, BOTH: tl.constexpr, BITS: tl.constexpr,
                     PRO: tl.constexpr, EPI: tl.constexpr, HAS_BASE: tl.constexpr, PREC: tl.constexpr):
        """One Kronecker pass with a fused prologue (load/gather) and epilogue (store/θ0 add/scatter)."""
        pid = tl.program_id(0).to(tl.int64)
        start = (pid // tiles_per_row) * K1 * stride + (pid % tiles_per_row) * K2
        r = start + tl.arange(0, K1)[:, None].to(tl.int64) * stride + tl.arange(0, K2)[None, :]
        ks = key_sign.to(tl.uint32, bitcast=True)
        kg1 = key_g1.to(tl.uint32, bitcast=True)
        kg2 = key_g2.to(tl.uint32, bitcast=True)
        kp = key_perm.to(tl.uint32, bitcast=True)
        ru = r.to(tl.uint32)
        if PRO == 0:
            x = tl.load(src + r).to(tl.float32)
        elif PRO == 1:
            perm = th.permute_in_block(kp, (r >> BITS).to(tl.uint32), ru, BITS)
            x = tl.load(src + perm.to(tl.int64)) * th.gaussian(kg1, kg2, ru)
        elif PRO == 2:
            x = tl.load(src + r, mask=r < total, other=0.0).to(tl.float32) * scale
        elif PRO == 3:
            x = tl.load(src + r, mask=r < d, other=0.0).to(tl.float32) * th.sign(ks, ru)
        else:
            x = tl.zeros([K1, K2], dtype=tl.float32)
            for j in range(blocks):
                x += tl.load(src + j * (1 << BITS) + r)
        y = tl.dot(_hadamard(K1), x, input_precision=PREC)
        if BOTH:
            y = tl.dot(y, _hadamard(K2), input_precision=PREC)
        if EPI == 0:
            tl.store(dst + r, y)
        elif EPI == 1:
            inside = r < total
            y = y * scale
            if HAS_BASE:
                y = y + tl.load(base + r, mask=inside, other=0.0).to(tl.float32)
            tl.store(dst + r, y.to(dst.dtype.element_ty), mask=inside)
        elif EPI == 2:
            perm = th.permute_in_block(kp, (r >> BITS).to(tl.uint32), ru, BITS)
            row = (r >> BITS) << BITS
            tl.store(dst + row + perm.to(tl.int64), y * th.gaussian(kg1, kg2, ru))
        else:
            tl.store(dst + r, y * th.sign(ks, ru), mask=r < d)


@functools.lru_cache(maxsize=64)
def _keys(plan) -> tuple[int, int, int, int]:
    """The plan's stream keys as int32 kernel arguments."""
    return tuple(th.as_int32(k) for k in (plan.key_sign, plan.key_gauss1, plan.key_gauss2, plan.key_perm))


def _launch(p: Pass, src, dst, length: int, plan, scale: float, pro: int, epi: int, base=None) -> None:
    """Launch one pass over a buffer of `length` elements."""
    warps = 8 if p.k1 * p.k2 >= 4096 else 4
    _pass_kernel[(p.grid(length),)](
        src, dst, base if base is not None else dst, p.stride, p.stride // p.k2, plan.total, plan.d, plan.blocks,
        scale, *_keys(plan),
        K1=p.k1, K2=p.k2, BOTH=p.both, BITS=plan.bits, PRO=pro, EPI=epi, HAS_BASE=base is not None,
        PREC=PRECISION, num_warps=warps)


def _run(passes: list[Pass], src, dst, work, length: int, plan, scale: float, pro: int, epi: int, base=None):
    """Chain the passes: src → work (in place) → dst, fusing the prologue into the first, epilogue into the last."""
    if len(passes) == 1:
        _launch(passes[0], src, dst, length, plan, scale, pro, epi, base)
        return
    _launch(passes[0], src, work, length, plan, scale, pro, EPI_STORE)
    for p in passes[1:-1]:
        _launch(p, work, work, length, plan, scale, PRO_LOAD, EPI_STORE)
    _launch(passes[-1], work, dst, length, plan, scale, PRO_LOAD, epi, base)


def forward(theta_d: torch.Tensor, base: torch.Tensor | None, plan, scale: float) -> torch.Tensor:
    """base + P·θ_d (base may be None) on the device of θ_d."""
    passes = plan_passes(plan.bits)
    theta_d = theta_d.contiguous().float()
    u = torch.empty(plan.n, device=theta_d.device, dtype=torch.float32)
    _run(passes, theta_d, u, u, plan.n, plan, scale, PRO_SIGNED, EPI_STORE)
    out_dtype = base.dtype if base is not None else torch.float32
    out = torch.empty(plan.total, device=theta_d.device, dtype=out_dtype)
    work = torch.empty(plan.padded, device=theta_d.device, dtype=torch.float32) if len(passes) > 1 else None
    _run(passes, u, out, work, plan.padded, plan, scale, PRO_GATHER, EPI_OUTPUT, base)
    return out


def backward(grad: torch.Tensor, plan, scale: float) -> torch.Tensor:
    """Pᵀ·grad, the exact transpose of `forward` (float32, length d)."""
    passes = plan_passes(plan.bits)
    scattered = torch.empty(plan.padded, device=grad.device, dtype=torch.float32)
    work = torch.empty(plan.padded, device=grad.device, dtype=torch.float32) if len(passes) > 1 else None
    _run(passes, grad, scattered, work, plan.padded, plan, scale, PRO_GRAD, EPI_SCATTER)
    out = torch.empty(plan.d, device=grad.device, dtype=torch.float32)
    if 1 < plan.blocks <= FUSED_SUM_BLOCKS:  # few blocks: sum them inside the first small pass
        y = torch.empty(plan.n, device=grad.device, dtype=torch.float32) if len(passes) > 1 else None
        _run(passes, scattered, out, y, plan.n, plan, scale, PRO_SUM, EPI_SIGNED)
        return out
    y = scattered.view(plan.blocks, plan.n).sum(0) if plan.blocks > 1 else scattered
    _run(passes, y, out, y, plan.n, plan, scale, PRO_LOAD, EPI_SIGNED)
    return out
