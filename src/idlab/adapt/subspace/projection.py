"""Common interface of the random projections P: R^d → R^D (dense, sparse, Fastfood)."""
from __future__ import annotations

import importlib

import torch
from torch import nn


class ProjectFn(torch.autograd.Function):
    """base + P·θ_d with the backward pass Pᵀ·g written out by the projection (no activations saved)."""

    @staticmethod
    def forward(ctx, theta_d, base, proj):  # noqa: D102
        ctx.proj, ctx.dtype = proj, theta_d.dtype
        ctx.base_needs_grad = base is not None and base.requires_grad
        return proj.apply_forward(theta_d, base)

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        grad_d = ctx.proj.apply_backward(grad.contiguous()).to(ctx.dtype)
        return grad_d, (grad if ctx.base_needs_grad else None), None


class Projection(nn.Module):
    """θ = base + P·θ_d for a fixed random P regenerated from `seed`; subclasses implement `forward`.

    Tensors of P are plain attributes named in `tensor_attrs`, moved by `_apply`, not buffers: they are
    regenerated from the seed (never checkpointed) and DDP would otherwise broadcast them every step.
    """

    tensor_attrs: tuple[str, ...] = ()
    kind: str = ""  # names the Triton kernel module idlab.adapt.subspace.<kind>_triton, if there is one

    def __init__(self, total: int, d: int, seed: int) -> None:
        super().__init__()
        self.total, self.d, self.seed = int(total), int(d), int(seed)
        self.device = torch.device("cpu")

    def _apply(self, fn, recurse=True):  # noqa: D102 - nn.Module hook: move P's tensors with the module
        super()._apply(fn, recurse)
        for name in self.tensor_attrs:
            setattr(self, name, fn(getattr(self, name)))
            self.device = getattr(self, name).device
        return self

    def use_triton(self, tensor: torch.Tensor) -> bool:
        """Whether this call runs the projection's Triton kernels (`backend`: auto, torch or triton)."""
        backend = getattr(self, "backend", "torch")
        if backend == "torch" or (backend == "auto" and not tensor.is_cuda):
            return False
        kernels = importlib.import_module(f"idlab.adapt.subspace.{self.kind}_triton")
        if not kernels.available():
            if backend == "triton":
                raise RuntimeError(f"{self.kind} backend='triton' needs the triton package and a GPU")
            return False
        return True

    def forward(self, theta_d: torch.Tensor, base: torch.Tensor | None = None) -> torch.Tensor:
        """Return base + P·θ_d (or P·θ_d when base is None), a flat tensor of length D."""
        raise NotImplementedError

    @torch.no_grad()
    def materialize(self, device: torch.device | None = None, chunk: int = 256) -> torch.Tensor:
        """The explicit D×d matrix P, built column by column from `forward` (tests and small models only)."""
        device = device or self.device
        columns = []
        for start in range(0, self.d, chunk):
            stop = min(self.d, start + chunk)
            eye = torch.zeros(stop - start, self.d, device=device)
            eye[torch.arange(stop - start), torch.arange(start, stop)] = 1.0
            columns.extend(self.forward(row) for row in eye)
        return torch.stack(columns, dim=1)
