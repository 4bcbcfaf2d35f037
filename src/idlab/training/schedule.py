"""Learning-rate schedules: linear warmup, then constant or cosine decay."""
from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

DECAYS = ("constant", "cosine")


class WarmupSchedule:
    """Factory for a per-step LambdaLR: `warmup_steps` linear ramp, then `decay` to `min_ratio`·lr."""

    def __init__(self, warmup_steps: int = 0, decay: str = "constant", min_ratio: float = 0.0) -> None:
        if warmup_steps < 0:
            raise ValueError(f"optim.schedule.warmup_steps={warmup_steps} must be ≥ 0")
        if decay not in DECAYS:
            raise ValueError(f"optim.schedule.decay={decay!r}; choose one of {DECAYS}")
        self.warmup_steps, self.decay, self.min_ratio = warmup_steps, decay, min_ratio

    def factor(self, step: int, total_steps: int) -> float:
        """Multiplier of the base learning rate at optimiser step `step`."""
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.decay == "constant":
            return 1.0
        progress = min(1.0, (step - self.warmup_steps) / max(1, total_steps - self.warmup_steps))
        return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    def __call__(self, optimizer: Optimizer, total_steps: int) -> LambdaLR:
        """Bind to an optimiser for a run of `total_steps` optimiser steps."""
        return LambdaLR(optimizer, lambda step: self.factor(step, total_steps))
