"""The adaptation seam: an object that wraps a model and says which parameters train."""
from __future__ import annotations

from torch import nn

from idlab.adapt.init_from import InitFromError, load_base_weights


class Adaptation:
    """Base class: `apply(model)` returns the module to train; its `requires_grad` parameters train."""

    def apply(self, model: nn.Module) -> nn.Module:
        """Wrap or modify `model` and return the module the LightningModule will call."""
        raise NotImplementedError

    def log_dict(self, module: nn.Module) -> dict[str, float]:
        """Scalars describing the adaptation (logged once at fit start, e.g. subspace/d)."""
        return {}


class Full(Adaptation):
    """Ordinary training of every parameter, from the model's init or from `init_from` (full fine-tuning)."""

    def __init__(self, init_from: str | None = None, reinit: tuple[str, ...] | list[str] = ()) -> None:
        self.init_from, self.reinit = init_from, tuple(reinit)
        if self.reinit and not init_from:
            raise InitFromError(f"adapt.reinit={list(self.reinit)} needs adapt.init_from (the checkpoint to start "
                                "from); without it every module keeps its fresh init anyway")

    def apply(self, model: nn.Module) -> nn.Module:
        """Load θ0 if asked, and make every parameter trainable."""
        if self.init_from:
            load_base_weights(model, self.init_from, self.reinit)
        for p in model.parameters():
            p.requires_grad_(True)
        return model


def count_trainable(module: nn.Module) -> int:
    """Number of scalars that receive gradients (shared tensors counted once)."""
    seen: set[int] = set()
    total = 0
    for p in module.parameters():
        if p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return total


def base_model(module: nn.Module) -> nn.Module:
    """The original architecture inside an adaptation wrapper (PEFT's convention: `get_base_model()`)."""
    return module.get_base_model() if hasattr(module, "get_base_model") else module
