"""SubspaceModel: the wrapped network run with θ = θ0 + P·θ_d (SAID: θ0_i + λ_i·(P·θ_{d−m})_i)."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import nn

from idlab.adapt.subspace.dense import DenseProjection
from idlab.adapt.subspace.fastfood import FastfoodProjection
from idlab.adapt.subspace.projection import Projection
from idlab.adapt.subspace.sparse import SparseProjection

PROJECTIONS = ("dense", "sparse", "fastfood")


def make_projection(kind: str, sizes: Sequence[int], d: int, seed: int) -> Projection:
    """The projection P: R^d → R^{Σ sizes} named `kind`."""
    if kind == "dense":
        return DenseProjection(sum(sizes), d, seed)
    if kind == "sparse":
        return SparseProjection(list(sizes), d, seed)
    if kind == "fastfood":
        return FastfoodProjection(sum(sizes), d, seed)
    raise ValueError(f"adapt.projection={kind!r} is unknown; use one of {', '.join(PROJECTIONS)}")


def parameter_slots(model: nn.Module) -> dict[int, list[tuple[nn.Module, str]]]:
    """Every (module, attribute) holding each Parameter object, so tied weights are swapped together."""
    slots: dict[int, list[tuple[nn.Module, str]]] = {}
    for module in model.modules():
        for attr, param in module._parameters.items():
            if param is not None:
                slots.setdefault(id(param), []).append((module, attr))
    return slots


@contextlib.contextmanager
def swapped_parameters(slots: list[list[tuple[nn.Module, str]]], tensors: list[torch.Tensor]) -> Iterator[None]:
    """Temporarily put `tensors` where the parameters are (torch.func.functional_call minus its name lookups)."""
    saved = []
    try:
        for places, tensor in zip(slots, tensors):
            for module, attr in places:
                saved.append((module, attr, module._parameters[attr]))
                module._parameters[attr] = tensor
        yield
    finally:
        for module, attr, original in reversed(saved):
            module._parameters[attr] = original


class SubspaceModel(nn.Module):
    """Wraps `model`; only θ_d (and SAID's λ, and parameters left trainable) train.

    The wrapped model's projected parameters become frozen views into one flat θ0, so checkpoints hold
    θ0 once (as the model's own tensors), θ_d, λ and the projection signature; P is regenerated from
    the seed. Buffers (BatchNorm statistics) stay the model's own and keep updating.
    """

    def __init__(self, model: nn.Module, names: Sequence[str], d: int, projection: str = "fastfood",
                 seed: int = 0, said: bool = False) -> None:
        super().__init__()
        self.model = model
        params = dict(model.named_parameters())
        self.names = list(names)
        self.shapes = [params[n].shape for n in self.names]
        self.sizes = [params[n].numel() for n in self.names]
        self.total = sum(self.sizes)
        self.said = bool(said)
        self.projection_name = projection
        scales = len(self.names) if said else 0
        self._theta0 = torch.cat([params[n].detach().reshape(-1) for n in self.names]).clone()
        slots = parameter_slots(model)
        self._slots = [slots[id(params[n])] for n in self.names]
        self._bind_base()
        self.theta_d = nn.Parameter(torch.zeros(d - scales))
        self.said_scales = nn.Parameter(torch.ones(scales)) if said else None
        self._segment = torch.repeat_interleave(torch.arange(scales), torch.tensor(self.sizes)) if said else None
        self.projection = make_projection(projection, self.sizes, d - scales, seed)
        signature = [PROJECTIONS.index(projection), d, seed, int(said), self.total]
        self.register_buffer("subspace_signature", torch.tensor(signature, dtype=torch.int64))

    @property
    def d(self) -> int:
        """Subspace dimension including SAID's scales."""
        return self.theta_d.numel() + (self.said_scales.numel() if self.said_scales is not None else 0)

    def get_base_model(self) -> nn.Module:
        """The wrapped architecture (its projected parameters hold θ0, not θ0 + P·θ_d)."""
        return self.model

    def _bind_base(self) -> None:
        """Make the projected parameters frozen views into θ0 (no second copy of the weights)."""
        offset = 0
        for places, shape, size in zip(self._slots, self.shapes, self.sizes):
            module, attr = places[0]
            param = module._parameters[attr]
            param.requires_grad_(False)
            param.data = self._theta0[offset: offset + size].view(shape)
            offset += size

    def _apply(self, fn, recurse=True):  # noqa: D102 - nn.Module hook: keep θ0 and the views together
        super()._apply(fn, recurse)
        self._theta0 = fn(self._theta0)
        if self._segment is not None:
            self._segment = self._segment.to(self._theta0.device)
        self._bind_base()
        return self

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):  # noqa: D102 - refuse checkpoints of another subspace
        key = prefix + "subspace_signature"
        if key in state_dict and not torch.equal(state_dict[key].cpu(), self.subspace_signature.cpu()):
            fields = "(projection id, d, seed, said, D)"
            error_msgs.append(f"checkpoint subspace {fields} = {state_dict[key].tolist()} but this run has "
                              f"{self.subspace_signature.tolist()}; resume with the same adapt.* settings")
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    def flat_parameters(self) -> torch.Tensor:
        """θ = θ0 + P·θ_d as one flat tensor (differentiable w.r.t. θ_d and λ)."""
        if self.said_scales is None:
            return self.projection(self.theta_d, self._theta0)
        delta = self.projection(self.theta_d)
        return torch.addcmul(self._theta0, self.said_scales[self._segment].to(delta.dtype), delta)

    def forward(self, *args, **kwargs):
        """Call the wrapped model with θ in place of its projected parameters."""
        theta = self.flat_parameters()
        tensors = [chunk.view(shape) for chunk, shape in zip(torch.split(theta, self.sizes), self.shapes)]
        with swapped_parameters(self._slots, tensors):
            return self.model(*args, **kwargs)

    @torch.no_grad()
    def merged_state_dict(self) -> dict[str, torch.Tensor]:
        """State dict of the wrapped architecture with θ = θ0 + P·θ_d (export, or init_from of a later run)."""
        state = {k: v.clone() for k, v in self.model.state_dict().items()}
        theta = self.flat_parameters()
        for name, chunk, shape in zip(self.names, torch.split(theta, self.sizes), self.shapes):
            state[name] = chunk.view(shape).clone()
        return state
