"""Counter-based hashing: random signs, Gaussians and permutations regenerated from a seed on any device.

The same integer arithmetic is written in Triton (`triton_hash.py`), so a projection drawn by the
PyTorch path on the CPU and by the Triton kernels on the GPU is the same matrix (Gaussians agree up to
float32 rounding of log/cos).
"""
from __future__ import annotations

import torch

M32 = 0xFFFFFFFF
GOLDEN = 0x9E3779B1
TWO_PI = 6.283185307179586
INV_2_24 = 1.0 / 16777216.0


def mix32_int(x: int) -> int:
    """lowbias32 integer finaliser on a Python int (host-side key derivation)."""
    x &= M32
    x ^= x >> 16
    x = (x * 0x7FEB352D) & M32
    x ^= x >> 15
    x = (x * 0x846CA68B) & M32
    x ^= x >> 16
    return x


def hash_int(key: int, index: int) -> int:
    """Hash of (key, index) on Python ints, equal to `hash32` elementwise."""
    return mix32_int((index * GOLDEN + key) & M32)


def stream_key(seed: int, stream: int) -> int:
    """Key of one random stream (signs, Gaussians, permutations, …) of a projection seeded by `seed`."""
    return mix32_int(mix32_int(seed & M32) ^ mix32_int((stream * GOLDEN) & M32) ^ ((seed >> 32) & M32))


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """(x * c) mod 2^32 for int64 tensors holding uint32 values, without int64 overflow."""
    lo, hi = c & 0xFFFF, (c >> 16) & 0xFFFF
    return (x * lo + (((x * hi) & 0xFFFF) << 16)) & M32


def _mul32_tensor(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """(x * c) mod 2^32 elementwise for two int64 tensors holding uint32 values."""
    lo, hi = c & 0xFFFF, (c >> 16) & 0xFFFF
    return (x * lo + (((x * hi) & 0xFFFF) << 16)) & M32


def mix32(x: torch.Tensor) -> torch.Tensor:
    """lowbias32 on an int64 tensor of uint32 values."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def hash32(key: int | torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """uint32 hash (as int64) of integer indices under a key; indices are taken mod 2^32."""
    return mix32((_mul32(index & M32, GOLDEN) + key) & M32)


def signs(key: int, index: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """±1 per index (top bit of the hash)."""
    return (1 - 2 * (hash32(key, index) >> 31)).to(dtype)


def gaussians(key1: int, key2: int, index: torch.Tensor) -> torch.Tensor:
    """Standard normal float32 per index (Box–Muller on two hashed uniforms)."""
    u1 = ((hash32(key1, index) >> 8).to(torch.float32) + 0.5) * INV_2_24
    u2 = (hash32(key2, index) >> 8).to(torch.float32) * INV_2_24
    return torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(TWO_PI * u2)


def permute_in_block(key: int, block: torch.Tensor, pos: torch.Tensor, bits: int) -> torch.Tensor:
    """Keyed bijection of `bits`-bit positions, a different one per block (3 add/odd-multiply/xorshift rounds)."""
    mask = (1 << bits) - 1
    shift = (bits + 1) // 2
    x = pos & mask
    for round_ in range(3):
        add = hash32(key, block * 8 + 2 * round_)
        odd = hash32(key, block * 8 + 2 * round_ + 1) | 1
        x = (x + add) & mask
        x = _mul32_tensor(x, odd) & mask
        x = x ^ (x >> shift)
    return x


def next_pow2(x: int) -> int:
    """Smallest power of two ≥ x (x ≥ 1)."""
    return 1 << max(0, (x - 1).bit_length())
