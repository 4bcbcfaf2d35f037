"""Which parameters are projected: include/exclude globs over parameter names, minus a directly trained head."""
from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase

from torch import nn


class SubspaceConfigError(ValueError):
    """An `adapt=subspace` setting that cannot work with this model (raised before training)."""


def head_parameter_names(model: nn.Module) -> list[str]:
    """Names of the parameters of the classifier head (the module named by the model's `head_name`)."""
    name = str(getattr(model, "head_name", "head"))
    head = getattr(model, name, None)
    if not isinstance(head, nn.Module):
        raise SubspaceConfigError(f"adapt.train_head=true but {type(model).__name__} has no head module "
                                  f"{name!r} (attribute `head_name`); set adapt.train_head=false")
    return [f"{name}.{param}" for param, _ in head.named_parameters()]


def select_parameters(model: nn.Module, include: Sequence[str], exclude: Sequence[str],
                      keep_out: Sequence[str] = ()) -> list[str]:
    """Parameter names matching any `include` glob and no `exclude` glob, minus `keep_out`, in model order."""
    names = [name for name, _ in model.named_parameters()]
    chosen = [n for n in names
              if any(fnmatchcase(n, g) for g in include) and not any(fnmatchcase(n, g) for g in exclude)
              and n not in keep_out]
    if not chosen:
        raise SubspaceConfigError(
            f"adapt.include={list(include)} / adapt.exclude={list(exclude)} select no parameters of "
            f"{type(model).__name__} (names look like {', '.join(names[:4])}); widen adapt.include")
    return chosen
