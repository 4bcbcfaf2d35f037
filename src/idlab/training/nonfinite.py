"""The NaN/inf guard: a per-step finiteness flag read one step late (no GPU stall), agreed by every DDP rank,
and a full check (weights, optimiser state, a loss evaluation) before any checkpoint is written.

Interface for any training path (the eager `training_step`, a CUDA-graph step that keeps its own device flag):
`push(step, loss_or_flag)` after each step, `finite_so_far()` before the next one, `checkpoint_safe(...)` before
a checkpoint. When either says no, the caller raises `NonFiniteLossError`; `idlab.run.train` turns it into a
diverged *result* (metrics.json with `diverged: true`), not a crash.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.distributed as dist
from torch import Tensor


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN/inf loss, or weights that are not finite or no longer evaluate to a finite loss."""

    def __init__(self, message: str, step: int) -> None:
        super().__init__(message)
        self.step = step


def all_finite(tensors: Iterable[Tensor]) -> Tensor:
    """One bool tensor: every floating tensor is free of NaN/inf (no host sync; tensors may sit on several
    devices, e.g. Adam's `step` on the CPU next to CUDA weights)."""
    flags = [torch.isfinite(t).all() for t in tensors if torch.is_floating_point(t) and t.numel()]
    if not flags:
        return torch.tensor(True)
    device = flags[0].device
    return torch.stack([f.to(device, non_blocking=True) for f in flags]).all()


def _world() -> int:
    """Number of processes in the default group (1 when not distributed)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def agree(flag: Tensor) -> Tensor:
    """`flag` AND-reduced over every rank, so all ranks take the same decision at the same step (async on NCCL)."""
    if _world() == 1:
        return flag
    reduced = flag.to(torch.int32)
    dist.all_reduce(reduced, op=dist.ReduceOp.MIN)
    return reduced.bool()


class NonFiniteGuard:
    """Decides "finite so far?" per step without stalling, and "safe to checkpoint?" before a checkpoint."""

    def __init__(self) -> None:
        self.pending: tuple[int, Tensor, torch.cuda.Event | None] | None = None
        self.bad_step: int | None = None  # first step found non-finite (sticky)
        self.safe_step: int | None = None  # last global step that passed `checkpoint_safe`

    def push(self, step: int, loss_or_flag: Tensor) -> None:
        """Queue whether step `step`'s loss is finite (a loss, or a bool flag kept on the device by a graph step).

        The flag is AND-reduced over DDP ranks and copied to pinned host memory asynchronously; nothing waits here.
        """
        value = loss_or_flag.detach()
        flag = agree(value if value.dtype == torch.bool else torch.isfinite(value).all())
        if not flag.is_cuda:
            self.pending = (step, flag, None)
            return
        host = torch.empty((), dtype=torch.bool, pin_memory=True)
        host.copy_(flag, non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        self.pending = (step, host, event)

    def finite_so_far(self) -> bool:
        """False once a queued flag was non-finite; waits only for the queued step's forward pass (one step late)."""
        if self.pending is not None:
            step, flag, event = self.pending
            self.pending = None
            if event is not None:
                event.synchronize()
            if not bool(flag) and self.bad_step is None:
                self.bad_step = step
        return self.bad_step is None

    def checkpoint_safe(self, step: int, tensors: Iterable[Tensor], loss_fn: Callable[[], Tensor] | None,
                        reduce: Callable[[bool], bool] = bool) -> bool:
        """Full check before a checkpoint at global step `step`: the queued loss flag, every tensor given (weights,
        buffers, optimiser state) finite, and `loss_fn()` (a loss on a stored batch) finite. `reduce` makes the ranks
        agree (e.g. the strategy's reduce_boolean_decision). Synchronises once; a passed step is not checked again."""
        if not self.finite_so_far():
            return False
        if self.safe_step == step:
            return True
        ok = all_finite(tensors)
        if loss_fn is not None:
            ok = ok & torch.isfinite(loss_fn().detach()).all().to(ok.device)
        if not reduce(bool(ok)):
            self.bad_step = step
            return False
        self.safe_step = step
        return True
