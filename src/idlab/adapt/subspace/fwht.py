"""Fast Walsh–Hadamard transform in PyTorch: Kronecker factors H_a ⊗ H_b ⊗ … applied as small ±1 matmuls."""
from __future__ import annotations

import functools

import torch

MAX_FACTOR_BITS = 7


@functools.lru_cache(maxsize=64)
def hadamard_matrix(size: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Unnormalised Sylvester Hadamard matrix H_size (entries ±1, symmetric)."""
    rows = torch.arange(size, device=device)
    bits = rows[:, None] & rows[None, :]
    parity = torch.zeros_like(bits)
    while bool(bits.any()):
        parity ^= bits & 1
        bits = bits >> 1
    return (1 - 2 * parity).to(dtype)


def factor_bits(bits: int, max_bits: int = MAX_FACTOR_BITS) -> list[int]:
    """Split log2(n) into near-equal parts of at most `max_bits` (the Kronecker factor sizes)."""
    if bits == 0:
        return []
    parts = -(-bits // max_bits)
    return [bits // parts + (1 if i < bits % parts else 0) for i in range(parts)]


def hadamard_rows(x: torch.Tensor) -> torch.Tensor:
    """H_n applied to every row of x (..., n), n a power of two; unnormalised, so H·H = n·I."""
    n = x.shape[-1]
    bits = n.bit_length() - 1
    if n != 1 << bits:
        raise ValueError(f"Hadamard transform length must be a power of two, got {n}")
    lead = x.shape[:-1]
    y = x.reshape(-1, n)
    rows = y.shape[0]
    for part in reversed(factor_bits(bits)):
        size = 1 << part
        h = hadamard_matrix(size, x.dtype, x.device)
        y = (y.reshape(-1, size) @ h).reshape(rows, n // size, size).transpose(1, 2).reshape(rows, n)
    return y.reshape(*lead, n)


class _Hadamard(torch.autograd.Function):
    """y = H x along the last dim; H is symmetric, so the backward pass is H g (no extra scale)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return hadamard_rows(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return hadamard_rows(grad)


def fwht(x: torch.Tensor) -> torch.Tensor:
    """Differentiable unnormalised Walsh–Hadamard transform along the last dimension."""
    return _Hadamard.apply(x)
