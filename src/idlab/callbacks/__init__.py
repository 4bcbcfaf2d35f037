"""Lightning callbacks that measure during training (activation intrinsic dimension) or keep snapshots."""
from idlab.callbacks.activation_id import ActivationID
from idlab.callbacks.snapshots import Snapshots

__all__ = ["ActivationID", "Snapshots"]
