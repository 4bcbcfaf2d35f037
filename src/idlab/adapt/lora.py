"""LoRA through PEFT: W = W0 + (α/r)·B·A on the chosen layers, B = 0 at init, W0 frozen."""
from __future__ import annotations

import re
from collections.abc import Sequence

from torch import nn

from idlab.adapt.peft_targets import PeftConfigError, is_lora_layer, max_rank
from idlab.adapt.peft_wrap import PeftAdaptation, exact_names_regex

INIT_CHOICES = (True, False, "gaussian", "pissa", "olora", "orthogonal", "mica")


def check_init(init: bool | str) -> None:
    """Accept PEFT's `init_lora_weights` values that need no extra data or quantisation config."""
    if init in INIT_CHOICES or (isinstance(init, str) and re.fullmatch(r"pissa_niter_\d+", init)):
        return
    raise PeftConfigError(f"adapt.init={init!r} is not supported; choose one of {list(INIT_CHOICES)} or "
                          "'pissa_niter_<n>' "
                          "(eva/corda/loftq/lora_ga need data or quantisation configs idlab does not pass)")


class LoRA(PeftAdaptation):
    """Low-rank adapters on `target_modules` (globs; null = the model's lora_targets), head per `head`."""

    adapted_head = "lora"
    log_prefix = "lora"

    def __init__(self, r: int = 8, alpha: float = 8.0, dropout: float = 0.0,
                 target_modules: Sequence[str] | str | None = None, head: str = "train",
                 init: bool | str = True, use_rslora: bool = False, use_dora: bool = False,
                 clip_r: bool = False, init_from: str | None = None, reinit: Sequence[str] | None = None) -> None:
        """Check the scalar settings; layer-dependent checks happen in `apply`."""
        if isinstance(r, bool) or not isinstance(r, int) or r <= 0:
            raise PeftConfigError(f"adapt.r={r!r} must be a positive integer (the LoRA rank, e.g. adapt.r=8)")
        if not alpha > 0:
            raise PeftConfigError(f"adapt.alpha={alpha!r} must be > 0 (scaling is alpha/r, e.g. adapt.alpha=8)")
        if not 0.0 <= dropout < 1.0:
            raise PeftConfigError(f"adapt.dropout={dropout!r} must lie in [0, 1)")
        check_init(init)
        super().__init__(target_modules, head, init_from, reinit)
        self.r, self.alpha, self.dropout = r, float(alpha), float(dropout)
        self.init, self.use_rslora, self.use_dora, self.clip_r = init, use_rslora, use_dora, clip_r
        self.rank_pattern: dict[str, int] = {}

    def layer_test(self, module: nn.Module) -> bool:
        """LoRA wraps Linear, Conv1d/2d/3d and Embedding layers."""
        return is_lora_layer(module)

    def check_layers(self, model: nn.Module, names: list[str]) -> None:
        """Refuse SVD inits on non-Linear layers and r above a layer's full rank (or clip it: clip_r=true)."""
        if self.init not in (True, False, "gaussian"):
            other = [f"{n} ({type(model.get_submodule(n)).__name__})" for n in names
                     if not isinstance(model.get_submodule(n), nn.Linear)]
            if other:
                raise PeftConfigError(f"adapt.init={self.init!r} is defined for Linear layers only in PEFT, but the "
                                      f"targets include {', '.join(other)}; use adapt.init=true or 'gaussian', or "
                                      "restrict adapt.target_modules to Linear layers")
        too_small = {n: max_rank(model.get_submodule(n)) for n in names}
        too_small = {n: k for n, k in too_small.items() if k < self.r}
        if too_small and not self.clip_r:
            rows = ", ".join(f"{n} ({type(model.get_submodule(n)).__name__}, max rank {k})"
                             for n, k in too_small.items())
            raise PeftConfigError(
                f"adapt.r={self.r} exceeds the full rank of: {rows}; lower adapt.r to ≤ {min(too_small.values())}, "
                "drop those layers from adapt.target_modules, or set adapt.clip_r=true to give them their full rank")
        self.rank_pattern = {"^" + re.escape(n): k for n, k in too_small.items()}

    def peft_config(self, model: nn.Module, names: list[str]):  # noqa: ANN201 - a peft.LoraConfig
        """LoraConfig for exactly `names`, with clipped ranks in rank_pattern."""
        from peft import LoraConfig

        return LoraConfig(r=self.r, lora_alpha=self.alpha, lora_dropout=self.dropout,
                          target_modules=exact_names_regex(names), init_lora_weights=self.init,
                          use_rslora=self.use_rslora, use_dora=self.use_dora, rank_pattern=dict(self.rank_pattern))

    def log_dict(self, module: nn.Module) -> dict[str, float]:
        """Rank and alpha, plus the shared PEFT counts."""
        return {"lora/r": float(self.r), "lora/alpha": self.alpha, **super().log_dict(module)}
