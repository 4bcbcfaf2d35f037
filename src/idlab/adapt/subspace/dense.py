"""Dense Gaussian projection with columns normalised to unit length over all D (Li et al. 2018)."""
from __future__ import annotations

import torch

from idlab.adapt.subspace.projection import Projection


def dense_bytes(total: int, d: int) -> int:
    """Bytes of a float32 D×d matrix."""
    return 4 * total * d


class DenseProjection(Projection):
    """P ~ N(0,1)^{D×d}, columns divided by their norm; drawn on the CPU so every device gets the same P."""

    tensor_attrs = ("matrix",)

    def __init__(self, total: int, d: int, seed: int) -> None:
        super().__init__(total, d, seed)
        generator = torch.Generator().manual_seed(seed)
        matrix = torch.randn(total, d, generator=generator)
        matrix /= matrix.norm(dim=0, keepdim=True)
        self.matrix = matrix

    def forward(self, theta_d: torch.Tensor, base: torch.Tensor | None = None) -> torch.Tensor:
        """base + P·θ_d (float32 matrix-vector product, autocast off)."""
        with torch.autocast(theta_d.device.type, enabled=False):
            delta = torch.mv(self.matrix.to(theta_d.dtype), theta_d)
            return delta if base is None else base + delta.to(base.dtype)
