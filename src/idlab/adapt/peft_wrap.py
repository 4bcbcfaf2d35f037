"""Shared machinery of the PEFT adaptations: θ0 loading, head policy, wrapping, merged export."""
from __future__ import annotations

import copy
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from torch import nn

from idlab.adapt.base import Adaptation, base_model, count_trainable
from idlab.adapt.init_from import load_base_weights
from idlab.adapt.peft_targets import (
    PeftConfigError,
    check_mergeable,
    head_name,
    is_under,
    resolve_targets,
)

HEAD_POLICIES = ("train", "frozen")


def exact_names_regex(names: Iterable[str]) -> str:
    """Regex that PEFT's `re.fullmatch` accepts for exactly these module names and no other."""
    return "(?:" + "|".join(re.escape(n) for n in names) + ")"


class PeftAdaptation(Adaptation):
    """Freeze the model, wrap chosen layers with a PEFT tuner, train the adapter (and the head if asked)."""

    adapted_head = "tuner"  # the `head` value meaning "the tuner adapts the head too"
    log_prefix = "peft"

    def __init__(self, target_modules: Sequence[str] | str | None, head: str,
                 init_from: str | None, reinit: Sequence[str] | None) -> None:
        """Check the settings shared by every PEFT adaptation."""
        if head not in (self.adapted_head, *HEAD_POLICIES):
            raise PeftConfigError(f"adapt.head={head!r} is not one of {self.adapted_head!r} (adapt the head), "
                                  "'train' (train it directly) or 'frozen'")
        if isinstance(target_modules, str):
            target_modules = [target_modules]
        self.target_modules = None if target_modules is None else [str(t) for t in target_modules]
        if self.target_modules is not None and not self.target_modules:
            raise PeftConfigError("adapt.target_modules=[] selects nothing; give module-name globs or null "
                                  "(null = the model class's lora_targets)")
        self.head = head
        self.init_from = None if init_from in (None, "") else str(init_from)
        self.reinit = tuple(str(r) for r in (reinit or ()))
        if self.reinit and self.init_from is None:
            raise PeftConfigError(f"adapt.reinit={list(self.reinit)} only applies with adapt.init_from "
                                  "(the checkpoint θ0 comes from); set adapt.init_from or drop adapt.reinit")

    def layer_test(self, module: nn.Module) -> bool:
        """True for modules this tuner may wrap."""
        raise NotImplementedError

    def check_layers(self, model: nn.Module, names: list[str]) -> None:
        """Tuner-specific checks of the chosen layers (raise PeftConfigError)."""

    def peft_config(self, model: nn.Module, names: list[str]):  # noqa: ANN201 - a peft.PeftConfig
        """The PEFT config that adapts exactly the modules `names` of `model`."""
        raise NotImplementedError

    def apply(self, model: nn.Module) -> nn.Module:
        """Load θ0, choose and check the layers, wrap with PEFT, set the head's `requires_grad`."""
        self.load_theta0(model)
        names = self.chosen_layers(model)
        self.check_layers(model, names)
        check_mergeable(model, names)
        wrapped = wrap_with_peft(model, self.peft_config(model, names))
        if self.head == "train":
            for p in model.get_submodule(head_name(model)).parameters():
                p.requires_grad_(True)
        return wrapped

    def load_theta0(self, model: nn.Module) -> None:
        """Copy `init_from`'s weights into `model`, keeping the fresh init of the `reinit` modules."""
        if self.init_from is None:
            return
        load_base_weights(model, self.init_from, self.reinit)  # rejects reinit entries naming no module

    def chosen_layers(self, model: nn.Module) -> list[str]:
        """Resolve target globs (default: the class's lora_targets) and apply the head policy."""
        globs, every_glob = self.target_modules, True
        if globs is None:
            globs, every_glob = getattr(type(model), "lora_targets", None), False
            if not globs:
                raise PeftConfigError(f"{type(model).__name__} defines no lora_targets; set adapt.target_modules "
                                      "to module-name globs")
        head = head_name(model)
        if not any(is_under(n, head) for n, _ in model.named_modules()):
            raise PeftConfigError(f"{type(model).__name__} has no module {head!r} (its head_name)")
        names = [n for n in resolve_targets(model, globs, self.layer_test, every_glob) if not is_under(n, head)]
        if self.head == self.adapted_head:
            names += [n for n, m in model.named_modules() if is_under(n, head) and self.layer_test(m)]
        if not names:
            raise PeftConfigError(f"adapt.target_modules={list(globs)} only selects the head {head!r}, which "
                                  f"adapt.head={self.head!r} excludes; target other layers or set "
                                  f"adapt.head={self.adapted_head!r}")
        return names

    def log_dict(self, module: nn.Module) -> dict[str, float]:
        """Adapted layer count, adapter and head trainable parameters."""
        from peft.tuners.tuners_utils import BaseTunerLayer

        base = base_model(module)
        head = base.get_submodule(head_name(base))
        head_params = sum(p.numel() for p in head.parameters() if p.requires_grad)
        layers = sum(isinstance(m, BaseTunerLayer) for m in base.modules())
        return {f"{self.log_prefix}/layers": float(layers),
                f"{self.log_prefix}/adapter_params": float(count_trainable(module) - head_params),
                f"{self.log_prefix}/head_params": float(head_params)}


def wrap_with_peft(model: nn.Module, config) -> nn.Module:  # noqa: ANN001 - a peft.PeftConfig
    """`peft.get_peft_model`, with PEFT's own refusals reported as PeftConfigError."""
    import peft

    try:
        return peft.get_peft_model(model, config)
    except (ValueError, TypeError, RuntimeError, NotImplementedError, KeyError) as err:
        raise PeftConfigError(f"PEFT {peft.__version__} cannot apply {config.peft_type.value} to "
                              f"{type(model).__name__}: {err}; restrict adapt.target_modules to layers it supports "
                              "or change the adapt settings PEFT names") from err


def merged_copy(module: nn.Module) -> nn.Module:
    """A plain architecture module with adapters merged into its weights (the input is left untouched)."""
    twin = copy.deepcopy(module)
    if not callable(getattr(twin, "merge_and_unload", None)):
        return twin
    try:
        return twin.merge_and_unload()
    except (NotImplementedError, ValueError, RuntimeError) as err:
        raise PeftConfigError(f"this adapter cannot be merged into the model: {err}") from err


def export_merged(module: nn.Module, path: str | Path) -> Path:
    """Write the merged model's plain state dict to `path` atomically; loadable by adapt.init_from."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    merged = merged_copy(module)
    state = {k: v.detach().cpu().clone() for k, v in merged.state_dict().items()}
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path
