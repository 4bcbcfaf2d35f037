"""`adapt=subspace`: train θ_d in θ = θ0 + P·θ_d (Li et al. 2018), optionally SAID (Aghajanyan et al. 2021)."""
from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from idlab.adapt.base import Adaptation
from idlab.adapt.init_from import InitFromError, load_base_weights
from idlab.adapt.subspace.dense import dense_bytes
from idlab.adapt.subspace.model import PROJECTIONS, SubspaceModel
from idlab.adapt.subspace.selection import SubspaceConfigError, head_parameter_names, select_parameters


class Subspace(Adaptation):
    """Random-subspace training with a global dense, sparse or Fastfood projection regenerated from `seed`."""

    def __init__(self, d: int, projection: str = "fastfood", seed: int = 0, said: bool = False,
                 include: Sequence[str] = ("*",), exclude: Sequence[str] = (), train_head: bool = False,
                 init_from: str | None = None, reinit: Sequence[str] = (), max_dense_bytes: int = 2**30,
                 baseline_acc: float | None = None) -> None:
        if isinstance(d, float) and d.is_integer():
            d = int(d)  # adapt.d=1e3 on the command line
        if not isinstance(d, int) or isinstance(d, bool) or d <= 0:
            raise SubspaceConfigError(f"adapt.d={d!r} must be a positive integer (the subspace dimension)")
        if projection not in PROJECTIONS:
            raise SubspaceConfigError(f"adapt.projection={projection!r} is unknown; "
                                      f"use one of {', '.join(PROJECTIONS)}")
        if max_dense_bytes <= 0:
            raise SubspaceConfigError(f"adapt.max_dense_bytes={max_dense_bytes} must be positive")
        if baseline_acc is not None and not 0.0 < baseline_acc <= 1.0:
            raise SubspaceConfigError(f"adapt.baseline_acc={baseline_acc} must be an accuracy in (0, 1]")
        if reinit and not init_from:
            raise InitFromError(f"adapt.reinit={list(reinit)} needs adapt.init_from (the checkpoint to start from)")
        self.d, self.projection, self.seed, self.said = d, projection, int(seed), bool(said)
        self.include, self.exclude = list(include), list(exclude)
        self.train_head, self.init_from, self.reinit = bool(train_head), init_from, tuple(reinit)
        self.max_dense_bytes, self.baseline_acc = int(max_dense_bytes), baseline_acc

    def apply(self, model: nn.Module) -> nn.Module:
        """Load θ0 (init_from), choose the projected tensors, check sizes, and wrap the model."""
        if self.init_from:
            load_base_weights(model, self.init_from, self.reinit)
        head = head_parameter_names(model) if self.train_head else []
        names = select_parameters(model, self.include, self.exclude, keep_out=head)
        params = dict(model.named_parameters())
        total = sum(params[n].numel() for n in names)
        self._check_sizes(total, len(names))
        for name, param in params.items():
            param.requires_grad_(name in head)
        wrapped = SubspaceModel(model, names, self.d, self.projection, self.seed, self.said)
        wrapped.baseline_acc = self.baseline_acc  # read by relative.RelativeAccuracy
        return wrapped

    def _check_sizes(self, total: int, tensors: int) -> None:
        """d ≤ D, SAID leaves θ_d entries, dense P fits in max_dense_bytes."""
        if self.d > total:
            raise SubspaceConfigError(f"adapt.d={self.d} exceeds D={total}, the number of projected parameters; "
                                      f"use d ≤ {total}")
        if self.said and self.d <= tensors:
            raise SubspaceConfigError(f"adapt.said=true spends one of d on each of the {tensors} projected tensors, "
                                      f"so adapt.d={self.d} leaves no θ_d; use d > {tensors}")
        size = dense_bytes(total, self.d)
        if self.projection == "dense" and size > self.max_dense_bytes:
            raise SubspaceConfigError(
                f"dense P would take {size / 2**30:.2f} GiB (D={total} × d={self.d} × 4 B) > "
                f"adapt.max_dense_bytes={self.max_dense_bytes}; use adapt.projection=fastfood or sparse "
                "(or raise adapt.max_dense_bytes)")

    def log_dict(self, module: nn.Module) -> dict[str, float]:
        """subspace/d (with SAID's scales), subspace/D, subspace/said_scales, and the baseline if given."""
        if not isinstance(module, SubspaceModel):
            return {}
        scales = module.said_scales.numel() if module.said_scales is not None else 0
        logged = {"subspace/d": float(module.d), "subspace/D": float(module.total),
                  "subspace/said_scales": float(scales)}
        if self.baseline_acc is not None:
            logged["subspace/baseline_acc"] = float(self.baseline_acc)
        return logged
