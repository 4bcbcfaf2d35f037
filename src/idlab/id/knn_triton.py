"""Triton kernels for the exact neighbour search: gathered pair distances and rounding a search space, one pass each."""
from __future__ import annotations

import os

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - Triton ships with CUDA builds of torch
    triton = None

ROUND_BLOCK = 1024  # features per loop step of the rounding kernel
MAX_BLOCK_C = 16
PAIR_TILE = 2048  # candidates × features per loop step of the pair kernel


def usable(keys: torch.Tensor) -> bool:
    """Whether the kernels apply: float32 rows with unit feature stride, on a GPU (or the CPU interpreter)."""
    if triton is None or keys.dtype != torch.float32 or keys.stride(1) != 1:
        return False
    return keys.is_cuda or (os.environ.get("TRITON_INTERPRET") == "1" and keys.device.type == "cpu")


if triton is not None:

    @triton.jit(do_not_specialize=["cand_stride", "count"])
    def _pair_kernel(keys, stride, rows, cand, cand_stride, out, count, features,
                     BLOCK_C: tl.constexpr, BLOCK_F: tl.constexpr):
        """Σ_f fl32(fl32(x_q − x_j)²) in float64 for one query row and BLOCK_C of its candidates j."""
        pid = tl.program_id(0).to(tl.int64)
        cols = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
        live = cols < count
        query = keys + tl.load(rows + pid).to(tl.int64) * stride
        other = tl.load(cand + pid * cand_stride + cols, mask=live, other=0).to(tl.int64) * stride
        acc = tl.zeros([BLOCK_C, BLOCK_F], dtype=tl.float64)
        for start in range(0, features, BLOCK_F):
            f = start + tl.arange(0, BLOCK_F)
            inside = f < features
            q = tl.load(query + f, mask=inside, other=0.0)
            k = tl.load(keys + other[:, None] + f[None, :], mask=live[:, None] & inside[None, :], other=0.0)
            diff = q[None, :] - k
            acc += (diff * diff).to(tl.float64)
        tl.store(out + pid * count + cols, tl.sum(acc, axis=1), mask=live)

    @triton.jit
    def _round_kernel(keys, stride, centre, scale, rounded, stats, features,
                      STORE: tl.constexpr, BLOCK_F: tl.constexpr):
        """One row: c = (x − centre)·scale; optionally store fp16(c); float64 ‖c‖², ‖c − fp16(c)‖², ‖fp16(c)‖²."""
        row = tl.program_id(0).to(tl.int64)
        acc_c = tl.zeros([BLOCK_F], dtype=tl.float64)
        acc_e = tl.zeros([BLOCK_F], dtype=tl.float64)
        acc_r = tl.zeros([BLOCK_F], dtype=tl.float64)
        for start in range(0, features, BLOCK_F):
            f = start + tl.arange(0, BLOCK_F)
            inside = f < features
            x = tl.load(keys + row * stride + f, mask=inside, other=0.0)
            centred = (x - tl.load(centre + f, mask=inside, other=0.0)) * scale
            wide = centred.to(tl.float64)
            acc_c += wide * wide
            if STORE:
                half = centred.to(tl.float16)
                tl.store(rounded + row * features + f, half, mask=inside)
                back = half.to(tl.float32)
                err = (centred - back).to(tl.float64)
                acc_e += err * err
                acc_r += back.to(tl.float64) * back.to(tl.float64)
        tl.store(stats + row * 3, tl.sum(acc_c, axis=0))
        tl.store(stats + row * 3 + 1, tl.sum(acc_e, axis=0))
        tl.store(stats + row * 3 + 2, tl.sum(acc_r, axis=0))


def pair_squared_distances(keys: torch.Tensor, positions: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """(rows, c) float64 squared distances from keys[positions[i]] to keys[candidates[i, j]], as the torch path."""
    rows, count = candidates.shape
    out = torch.empty((rows, count), dtype=torch.float64, device=keys.device)
    if rows == 0 or count == 0:
        return out
    block_c = min(MAX_BLOCK_C, triton.next_power_of_2(count))
    candidates = candidates.contiguous()
    grid = (rows, triton.cdiv(count, block_c))
    _pair_kernel[grid](keys, keys.stride(0), positions.contiguous(), candidates, candidates.stride(0), out, count,
                       keys.shape[1], BLOCK_C=block_c, BLOCK_F=PAIR_TILE // block_c, num_warps=4)
    return out


def centre_and_round(keys: torch.Tensor, centre: torch.Tensor, scale: float,
                     rounded: torch.Tensor | None = None) -> torch.Tensor:
    """(N, 3) float64 per-row ‖c‖², ‖c − fp16(c)‖², ‖fp16(c)‖² of c = (x − centre)·scale; fills `rounded` if given."""
    stats = torch.zeros((keys.shape[0], 3), dtype=torch.float64, device=keys.device)
    store = rounded is not None
    target = rounded if store else stats
    block = min(ROUND_BLOCK, triton.next_power_of_2(keys.shape[1]))
    _round_kernel[(keys.shape[0],)](keys, keys.stride(0), centre.contiguous(), scale, target, stats, keys.shape[1],
                                    STORE=store, BLOCK_F=block, num_warps=4)
    return stats
