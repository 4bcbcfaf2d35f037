"""Lightning callbacks that measure during training (activation intrinsic dimension) or keep snapshots.

Imported on first use, so a run with snapshots only never imports the ID estimators (scikit-dimension)."""
from __future__ import annotations

from typing import Any

__all__ = ["ActivationID", "Snapshots"]


def __getattr__(name: str) -> Any:
    """idlab.callbacks.ActivationID / .Snapshots, importing their module then."""
    if name == "ActivationID":
        from idlab.callbacks.activation_id import ActivationID
        return ActivationID
    if name == "Snapshots":
        from idlab.callbacks.snapshots import Snapshots
        return Snapshots
    raise AttributeError(f"module 'idlab.callbacks' has no attribute {name!r}")
