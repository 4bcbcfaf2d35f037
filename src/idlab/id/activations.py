"""Layer outputs of a model on a probe set: name/glob resolution and forward hooks that exist only while recording."""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from fnmatch import fnmatchcase

import torch
from torch import nn

REDUCTIONS = ("last", "flatten", "mean")


def module_names(model: nn.Module) -> list[str]:
    """Dotted names of every submodule (the root excluded)."""
    return [name for name, _ in model.named_modules() if name]


def matches(pattern: str, name: str) -> bool:
    """Glob match segment by segment: `*` never crosses a dot (`layer*` is layer1, not layer1.0.conv1)."""
    parts, segments = pattern.split("."), name.split(".")
    return len(parts) == len(segments) and all(fnmatchcase(s, p) for p, s in zip(parts, segments))


def match_layers(model: nn.Module, patterns: Sequence[str]) -> list[str]:
    """Module names matched by the patterns (in module order); a pattern matching nothing is an error."""
    names = module_names(model)
    if not patterns:
        raise ValueError(f"no layers to track: {type(model).__name__} defines no id_layers; set "
                         f"callbacks.activation_id.layers to some of its modules: {names}")
    chosen: list[str] = []
    for pattern in patterns:
        found = [n for n in names if matches(pattern, n)]
        if not found:
            raise ValueError(f"layer {pattern!r} matches no module of {type(model).__name__} (`*` stays within one "
                             f"dotted segment); its modules are: {names}")
        chosen += [n for n in found if n not in chosen]
    return [n for n in names if n in chosen]


def reduce_output(output: object, sequence_reduction: str) -> torch.Tensor:
    """(B, F) features of a module output: tuples give their first item; (B, T, C) uses the last position by default."""
    if isinstance(output, (tuple, list)):
        output = output[0]
    if not isinstance(output, torch.Tensor):
        raise TypeError(f"a tracked layer returned {type(output).__name__}, not a tensor; track a module returning one")
    if output.ndim == 3:
        if sequence_reduction == "last":
            return output[:, -1]
        if sequence_reduction == "mean":
            return output.mean(1)
    return output.reshape(output.shape[0], -1)


@contextmanager
def recording(model: nn.Module, names: Sequence[str], sequence_reduction: str,
              store: torch.device | None) -> Iterator[dict[str, list[torch.Tensor]]]:
    """Forward hooks on the named modules for the duration of the block; outputs are keyed in firing order."""
    outputs: dict[str, list[torch.Tensor]] = {}
    modules = dict(model.named_modules())

    def hook_for(name: str) -> Callable:
        def hook(module: nn.Module, args: object, output: object) -> None:
            features = reduce_output(output, sequence_reduction).detach().float()
            outputs.setdefault(name, []).append(features if store is None else features.to(store))
        return hook

    handles = [modules[n].register_forward_hook(hook_for(n)) for n in names]
    try:
        yield outputs
    finally:
        for handle in handles:
            handle.remove()


def collect_activations(forward: Callable[[torch.Tensor], object], model: nn.Module, names: Sequence[str],
                        x: torch.Tensor, batch_size: int, device: torch.device, sequence_reduction: str = "last",
                        store: torch.device | None = None, channels_last: bool = True) -> dict[str, torch.Tensor]:
    """{layer: (N, F) float32 features} in forward order, running `forward` over x in batches on `device`.
    Image batches (N, C, H, W) on CUDA go in channels-last, which cuDNN's convolutions run faster (ResNet-18's
    10,000-image probe: 1.6× on an H200, activations within 1e-3 relative of NCHW; docs/benchmarks.md)."""
    with recording(model, names, sequence_reduction, store) as outputs:
        for start in range(0, x.shape[0], batch_size):
            batch = x[start : start + batch_size].to(device, non_blocking=True)
            if channels_last and batch.dim() == 4 and batch.is_cuda:
                batch = batch.contiguous(memory_format=torch.channels_last)
            forward(batch)
    silent = [n for n in names if n not in outputs]
    if silent:
        raise RuntimeError(f"layers {silent} produced no output in the forward pass; track modules the model calls")
    features = {name: torch.cat(parts) for name, parts in outputs.items()}
    repeated = [n for n, f in features.items() if f.shape[0] != x.shape[0]]
    if repeated:
        raise RuntimeError(f"layers {repeated} ran more than once per forward pass; track a module called once")
    return features


class PassRecording:
    """The named layers' outputs during forward passes that someone else runs over a whole split in order (Lightning's
    validation loop), kept for the rows of a probe drawn from that split: the probe's activations without a forward of
    its own. Each batch's inputs are checked against the probe's (`batch_end`), each layer must fire once per batch,
    and `close` returns {layer: (N, F) float32} in probe order, or None with the reason in `why`."""

    def __init__(self, model: nn.Module, names: Sequence[str], probe_x: torch.Tensor, index: torch.Tensor | None,
                 split_size: int, sequence_reduction: str = "last", store: torch.device | None = None) -> None:
        """index: the split rows of the probe in probe order (None: the whole split, in order)."""
        self.names, self.probe_x, self.split_size = list(names), probe_x, split_size
        self.reduction, self.store = sequence_reduction, store
        self.offset, self.batches, self.why = 0, 0, None
        self.parts: dict[str, list[torch.Tensor]] = {n: [] for n in self.names}
        self.checks: list[torch.Tensor] = []
        self.order = self.keep = None
        if index is not None:  # the kept rows arrive in split order: order[j] is the probe position of the j-th
            rows, self.order = index.sort()
            self.keep = torch.zeros(split_size, dtype=torch.bool)
            self.keep[rows] = True
        self.kept = 0  # probe rows seen before the current batch
        self.selection: torch.Tensor | None = None
        modules = dict(model.named_modules())
        self.handles = [modules[n].register_forward_hook(self.hook_for(n)) for n in self.names]

    def hook_for(self, name: str) -> Callable:
        """The forward hook of one layer: its reduced outputs at the probe's rows of the current batch."""
        def hook(module: nn.Module, args: object, output: object) -> None:
            if self.why is not None:
                return
            features = reduce_output(output, self.reduction).detach().float()
            if self.keep is not None:
                features = features.index_select(0, self.rows(features.shape[0], features.device))
            self.parts[name].append(features if self.store is None else features.to(self.store))
        return hook

    def rows(self, size: int, device: torch.device) -> torch.Tensor:
        """Positions within the current batch (at self.offset, `size` rows) that belong to the probe."""
        if self.selection is None or self.selection.device != device:
            local = self.keep[self.offset : self.offset + size].nonzero().squeeze(1)
            self.selection = local.to(device, non_blocking=True)
        return self.selection

    def batch_end(self, x: object) -> None:
        """After one batch's forward: check it ran every layer once on the probe's next inputs."""
        if self.why is not None:
            return
        if not isinstance(x, torch.Tensor):
            self.why = f"a validation batch's inputs are {type(x).__name__}, not a tensor"
            return
        size = x.shape[0]
        self.batches += 1
        fired = [n for n in self.names if len(self.parts[n]) != self.batches]
        if fired or self.offset + size > self.split_size:
            self.why = (f"layers {fired} did not run exactly once on a validation batch" if fired else
                        f"validation ran over more than the split's {self.split_size} rows")
            return
        if self.keep is None:
            seen, reference = x, self.probe_x[self.offset : self.offset + size]
        else:
            seen = x.index_select(0, self.rows(size, x.device))
            reference = self.probe_x.index_select(0, self.order[self.kept : self.kept + seen.shape[0]].to(
                self.probe_x.device))
            self.kept += seen.shape[0]
        reference = reference.to(x.device, non_blocking=True)
        if seen.shape != reference.shape:
            self.why = f"validation inputs of shape {tuple(seen.shape[1:])} are not the probe's"
        else:
            self.checks.append((seen == reference).all())
        self.offset += size
        self.selection = None

    def close(self) -> dict[str, torch.Tensor] | None:
        """Remove the hooks; the probe's activations, or None (and `why`) if the pass was not the probe's forward."""
        for handle in self.handles:
            handle.remove()
        self.handles = []
        if self.why is None and self.offset != self.split_size:
            self.why = f"validation covered {self.offset} of the split's {self.split_size} rows"
        with torch.inference_mode(False):  # Lightning validates in inference mode; the estimators need plain tensors
            if self.why is None and not bool(torch.stack(self.checks).all()):
                self.why = "the validation batches are not the probe's inputs in order"
            if self.why is not None:
                self.parts = {}
                return None
            features = {}
            for name in self.names:
                rows = torch.cat(self.parts.pop(name))
                if self.order is not None:
                    rows = torch.empty_like(rows).index_copy_(0, self.order.to(rows.device), rows)
                features[name] = rows
        return features
