"""NaN/inf loss detection that never stalls the GPU: a step's flag is read back one step later."""
from __future__ import annotations

import torch
from torch import Tensor


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss."""


class LossWatch:
    """Queues each training loss's finiteness to pinned host memory; `check` reads the last one queued."""

    def __init__(self) -> None:
        self.pending: tuple[int, Tensor, torch.cuda.Event | None] | None = None

    def push(self, step: int, loss: Tensor) -> None:
        """Record whether `loss` (of optimiser step `step`) is finite, asynchronously on the GPU."""
        flag = torch.isfinite(loss.detach())
        if not flag.is_cuda:
            self.pending = (step, flag, None)
            return
        host = torch.empty((), dtype=torch.bool, pin_memory=True)
        host.copy_(flag, non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        self.pending = (step, host, event)

    def check(self) -> int | None:
        """The step of the queued loss if it was NaN/inf, else None; waits only for that step's forward pass."""
        if self.pending is None:
            return None
        step, flag, event = self.pending
        self.pending = None
        if event is not None:
            event.synchronize()
        return None if bool(flag) else step
