"""Fully connected network (Li et al.'s MNIST FC: 784-200-200-10, D = 199,210)."""
from __future__ import annotations

import math

from torch import Tensor, nn

from idlab.data.spec import DataSpec
from idlab.models.base import Net, positive


class FC(Net):
    """`depth` hidden layers of `width` ReLU units and a linear head."""

    id_layers = ("blocks.*",)
    lora_targets = ("blocks.*.0", "head")

    def __init__(self, spec: DataSpec, width: int = 200, depth: int = 2) -> None:
        super().__init__(spec)
        positive(width=width, depth=depth)
        sizes = [math.prod(spec.input_shape)] + [width] * depth
        self.blocks = nn.ModuleList(nn.Sequential(nn.Linear(a, b), nn.ReLU()) for a, b in zip(sizes, sizes[1:]))
        self.head = nn.Linear(width, spec.num_classes)

    @property
    def llid_layer(self) -> str:
        """The last hidden block (Linear + ReLU), whose output the head reads."""
        return f"blocks.{len(self.blocks) - 1}"

    def forward(self, x: Tensor) -> Tensor:
        """Logits for a batch of images."""
        x = x.flatten(1)
        for block in self.blocks:
            x = block(x)
        return self.head(x)
