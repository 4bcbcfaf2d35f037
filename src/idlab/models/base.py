"""What every architecture shares: a DataSpec check and the names other concerns rely on."""
from __future__ import annotations

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
