"""What every architecture shares: a DataSpec check, the names other concerns rely on, and `evaluation`."""
from __future__ import annotations

import torch
from torch import nn

from idlab.data.spec import DataSpec


class IncompatibleDataError(ValueError):
    """The chosen model cannot read the chosen dataset."""


class Net(nn.Module):
    """Base of idlab architectures: `head_name`, `id_layers`, `llid_layer` and `lora_targets` name modules for
    other concerns. `llid_layer` is the module whose output is exactly the input of the head (tested per model)."""

    head_name: str = "head"
    id_layers: tuple[str, ...] = ()
    llid_layer: str | None = None
    lora_targets: tuple[str, ...] = ()
    accepts: str = "image"

    def __init__(self, spec: DataSpec) -> None:
        super().__init__()
        if spec.kind != self.accepts:
            hint = "data=modular" if self.accepts == "tokens" else "data=mnist_mini|mnist|cifar10|cifar100"
            raise IncompatibleDataError(
                f"model={type(self).__name__.lower()} reads {self.accepts} data, but data={spec.name} gives "
                f"{spec.kind}; pick {hint} or another model")
        self.spec = spec


def positive(**values: int | float) -> None:
    """Raise a ValueError naming the first non-positive size."""
    for name, value in values.items():
        if value <= 0:
            raise ValueError(f"model.{name}={value} must be positive")


class evaluation:
    """eval() + no_grad() for the block; every submodule's previous train/eval flag is restored afterwards."""

    def __init__(self, module: nn.Module) -> None:
        """Remember the module to switch."""
        self.module = module

    def __enter__(self) -> None:
        """Record each submodule's mode, switch to eval and disable autograd."""
        self.modes = {m: m.training for m in self.module.modules()}
        self.grad = torch.is_grad_enabled()
        self.module.eval()
        torch.set_grad_enabled(False)

    def __exit__(self, *exc: object) -> None:
        """Restore autograd and every submodule's mode."""
        torch.set_grad_enabled(self.grad)
        for module, training in self.modes.items():
            module.training = training
