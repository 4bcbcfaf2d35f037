"""Adaptations: which parameters train, and how (full, random subspace, LoRA)."""
from idlab.adapt.base import Adaptation, Full, base_model, count_trainable

__all__ = ["Adaptation", "Full", "base_model", "count_trainable"]
