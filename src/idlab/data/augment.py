"""Batched image transforms that run wherever the data lives (CPU or GPU)."""
from __future__ import annotations

from functools import lru_cache

import torch
from torch import Tensor


@lru_cache(maxsize=None)
def channel_stats(values: tuple[float, ...], device: torch.device) -> Tensor:
    """(1, C, 1, 1) tensor on `device`, made once (a fresh host→GPU copy every batch would stall the GPU)."""
    return torch.tensor(values, device=device).view(1, -1, 1, 1)


def normalize(x: Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> Tensor:
    """uint8 (B, C, H, W) → float, scaled to [0, 1] and standardised per channel."""
    return (x.float().div_(255) - channel_stats(mean, x.device)) / channel_stats(std, x.device)


def random_crop_flip(x: Tensor, gen: torch.Generator, pad: int = 4, flip: bool = True) -> Tensor:
    """Standard CIFAR augmentation: zero-pad by `pad`, random crop back, random horizontal flip."""
    b, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=gen, device=x.device)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=gen, device=x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, :, None]
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, :]
    out = padded[torch.arange(b, device=x.device)[:, None, None], :, rows, cols].permute(0, 3, 1, 2)
    if flip:
        mirrored = torch.rand(b, generator=gen, device=x.device) < 0.5
        out = torch.where(mirrored[:, None, None, None], out.flip(3), out)
    return out.contiguous()
