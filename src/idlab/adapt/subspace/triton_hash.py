"""Triton twins of `hashing.py` (same uint32 arithmetic, so kernels regenerate the same random draws)."""
from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def mix32(x):
    """lowbias32 on a uint32 tensor."""
    x = x ^ (x >> 16)
    x = x * 0x7FEB352D
    x = x ^ (x >> 15)
    x = x * 0x846CA68B
    return x ^ (x >> 16)


@triton.jit
def hash32(key, index):
    """uint32 hash of uint32 indices under a uint32 key."""
    return mix32(index * 0x9E3779B1 + key)


@triton.jit
def sign(key, index):
    """±1.0 per uint32 index."""
    return 1.0 - 2.0 * (hash32(key, index) >> 31).to(tl.float32)


@triton.jit
def gaussian(key1, key2, index):
    """Standard normal float32 per uint32 index (Box–Muller)."""
    u1 = ((hash32(key1, index) >> 8).to(tl.float32) + 0.5) * 5.960464477539063e-08
    u2 = (hash32(key2, index) >> 8).to(tl.float32) * 5.960464477539063e-08
    return tl.sqrt(-2.0 * tl.log(u1)) * tl.cos(6.283185307179586 * u2)


@triton.jit
def permute_in_block(key, block, pos, BITS: tl.constexpr):
    """Keyed bijection of BITS-bit positions, one per block (3 add/odd-multiply/xorshift rounds)."""
    x = pos & ((1 << BITS) - 1)
    for rnd in tl.static_range(3):
        add = hash32(key, block * 8 + 2 * rnd)
        odd = hash32(key, block * 8 + 2 * rnd + 1) | 1
        x = (x + add) & ((1 << BITS) - 1)
        x = (x * odd) & ((1 << BITS) - 1)
        x = x ^ (x >> ((BITS + 1) // 2))
    return x


def as_int32(key: int) -> int:
    """A uint32 key as the int32 with the same bits (Triton types kernel ints ≥ 2^31 as int64)."""
    return key - (1 << 32) if key >= 1 << 31 else key
