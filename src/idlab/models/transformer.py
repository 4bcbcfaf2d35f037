"""Decoder-style transformer for token tasks (Power et al. / Brown et al. grokking: 2 layers, width 128, 4 heads)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from idlab.data.spec import DataSpec
from idlab.models.base import Net, positive


class Attention(nn.Module):
    """Causal multi-head self-attention with explicit q/k/v/o projections (adapters can reach every one)."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.o = (nn.Linear(width, width) for _ in range(4))

    def forward(self, x: Tensor) -> Tensor:
        """(B, T, C) → (B, T, C)."""
        b, t, c = x.shape
        split = lambda z: z.view(b, t, self.heads, c // self.heads).transpose(1, 2)  # noqa: E731
        y = F.scaled_dot_product_attention(split(self.q(x)), split(self.k(x)), split(self.v(x)), is_causal=True)
        return self.o(y.transpose(1, 2).reshape(b, t, c))


class Block(nn.Module):
    """Pre-norm residual block: x + attn(ln1(x)), then x + mlp(ln2(x))."""

    def __init__(self, width: int, heads: int, mlp_ratio: int) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attn = Attention(width, heads)
        self.mlp = nn.Sequential(nn.Linear(width, mlp_ratio * width), nn.GELU(), nn.Linear(mlp_ratio * width, width))

    def forward(self, x: Tensor) -> Tensor:
        """(B, T, C) → (B, T, C)."""
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class Transformer(Net):
    """Token + learned position embeddings, `depth` blocks, final LayerNorm; logits read at the last position."""

    accepts = "tokens"
    id_layers = ("blocks.*.attn", "blocks.*.mlp", "ln_f")
    llid_layer = "ln_f"  # the residual stream after the last block, final LayerNorm, last position: the head's input
    lora_targets = ("blocks.*.attn.q", "blocks.*.attn.k", "blocks.*.attn.v", "blocks.*.attn.o",
                    "blocks.*.mlp.0", "blocks.*.mlp.2")

    def __init__(self, spec: DataSpec, width: int = 128, depth: int = 2, heads: int = 4, mlp_ratio: int = 4) -> None:
        super().__init__(spec)
        positive(width=width, depth=depth, heads=heads, mlp_ratio=mlp_ratio)
        if width % heads:
            raise ValueError(f"model.width={width} must be divisible by model.heads={heads}")
        self.embed = nn.Embedding(spec.vocab_size, width)
        self.pos = nn.Parameter(torch.randn(spec.input_shape[0], width) / math.sqrt(width))
        self.blocks = nn.ModuleList(Block(width, heads, mlp_ratio) for _ in range(depth))
        self.ln_f = nn.LayerNorm(width)
        self.head = nn.Linear(width, spec.num_classes)

    def forward(self, tokens: Tensor) -> Tensor:
        """(B, T) int tokens → (B, num_classes) logits at the last position."""
        x = self.embed(tokens) + self.pos[: tokens.shape[1]]
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x[:, -1]))
