"""Lightning callbacks that measure during training (activation intrinsic dimension)."""
from idlab.callbacks.activation_id import ActivationID

__all__ = ["ActivationID"]
