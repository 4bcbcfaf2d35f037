"""`self.log` without its per-call walk: Lightning's `_ResultCollection.log` calls `_ResultMetric.to(value.device)`
on every call, and that `to` rebuilds the metric's whole `__dict__` through `apply_to_collection`, which deep-copies
its metadata dataclass and walks every `nn.Module` attribute. That is about 90 % of a `self.log` call (≈ 0.5 of
0.6 ms on a 2-core CPU; a call took ≈ 1.3 ms in the profile of a captured GPU fit), paid even when every tensor
is already on the device, i.e. on every call after a key's first.

`install()` (run when `idlab.training.module` is imported) wraps that `to`: when its only argument is a device
and every tensor the walk would reach is already there, it returns the metric unchanged (the walk would have
moved nothing); anything else (another device, a dtype, keyword arguments, a module or metric inside) goes to
Lightning's own `to`. A Lightning whose `to` is not the one it knows (by the names its code uses) is left alone.
IDLAB_FAST_LOG=0 in the environment switches it off.

`host_floats` reads a list of device scalars with one device-to-host copy (`to_host`) instead of one `float()`, i.e.
one host-device synchronisation, per value.
"""
from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

log = logging.getLogger(__name__)

_KNOWN_NAMES = {"__dict__", "update", "apply_to_collection", "move_data_to_device"}  # Lightning 2.x's `to`
_PLAIN = frozenset({bool, int, float, str, type(None), torch.device, torch.dtype})
_FIELDS: dict[type, tuple[str, ...]] = {}


def already_on(metric: Any, device: torch.device) -> bool:
    """Whether every tensor that `apply_to_collection` would reach in `metric.__dict__` (through mappings,
    sequences and dataclasses) is on `device`; False at any module or metric inside, which only the full walk moves."""
    for value in vars(metric).values():
        if type(value) not in _PLAIN and not _on(value, device):
            return False
    return True


def _on(value: Any, device: torch.device) -> bool:
    kind = type(value)
    if kind in _PLAIN or callable(value) and not isinstance(value, torch.nn.Module):
        return True
    if isinstance(value, Tensor):
        return value.device == device
    if isinstance(value, torch.nn.Module):
        return False
    if isinstance(value, Mapping):  # the containers apply_to_collection walks (str is in _PLAIN)
        return all(_on(v, device) for v in value.values())
    if isinstance(value, Sequence):
        return all(_on(v, device) for v in value)
    if kind not in _FIELDS:
        _FIELDS[kind] = tuple(f.name for f in dataclasses.fields(value)) if dataclasses.is_dataclass(value) else ()
    return all(_on(getattr(value, name), device) for name in _FIELDS[kind])


def to_host(values: Sequence[Any], host: torch.device | str = "cpu") -> list[Any]:
    """`values` with every one-element tensor not on `host` replaced by a copy of it there (same shape, dtype and
    value), made with one copy per (device, dtype) group rather than one per tensor; everything else unchanged."""
    host = torch.device(host)
    out, groups = list(values), {}
    for i, value in enumerate(out):
        if isinstance(value, Tensor) and value.device != host and value.numel() == 1:
            groups.setdefault((value.device, value.dtype), []).append(i)
    for indices in groups.values():
        moved = torch.stack([out[i].detach().reshape(()) for i in indices]).to(host)
        for i, scalar in zip(indices, moved.unbind()):
            out[i] = scalar.reshape(out[i].shape)
    return out


def host_floats(values: Sequence[Any]) -> list[float]:
    """`float(v)` for each value, with the device tensors among them fetched in one copy (`to_host`)."""
    return [float(v) for v in to_host(values)]


def install() -> bool:
    """Wrap `_ResultMetric.to` once (returns whether the wrapper is in place)."""
    if os.environ.get("IDLAB_FAST_LOG", "1") == "0":
        return False
    from pytorch_lightning.trainer.connectors.logger_connector.result import _ResultMetric

    original = _ResultMetric.to
    if getattr(original, "idlab_fast", False):
        return True
    code = getattr(original, "__code__", None)
    if code is None or not _KNOWN_NAMES <= set(code.co_names):
        log.debug("fast_log: this Lightning's _ResultMetric.to is not the known one; self.log left as it is")
        return False

    def to(self, *args: Any, **kwargs: Any):  # noqa: ANN001, ANN202 - the signature of the method it wraps
        if not kwargs and len(args) == 1 and isinstance(args[0], torch.device) and already_on(self, args[0]):
            return self
        return original(self, *args, **kwargs)

    to.idlab_fast = True
    to.__wrapped__ = original
    _ResultMetric.to = to
    return True
