"""Which layers a PEFT adapter wraps: module-name globs resolved against the architecture, with checks."""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from fnmatch import fnmatchcase

from torch import nn

LORA_LAYER_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Embedding)


class PeftConfigError(ValueError):
    """An `adapt=lora` / `adapt=peft` setting that cannot work with this model."""


def head_name(model: nn.Module) -> str:
    """Name of the classifier module (the architecture's `head_name`, "head" for other modules)."""
    return str(getattr(model, "head_name", "head"))


def matches(name: str, glob: str) -> bool:
    """True when the module `name` matches `glob` in full or as a dotted suffix (PEFT's suffix rule)."""
    return fnmatchcase(name, glob) or fnmatchcase(name, "*." + glob)


def is_under(name: str, prefix: str) -> bool:
    """True when module `name` is `prefix` itself or inside it."""
    return name == prefix or name.startswith(prefix + ".")


def is_lora_layer(module: nn.Module) -> bool:
    """True for the layer types PEFT LoRA wraps and can merge (Linear, Conv1d/2d/3d, Embedding)."""
    return isinstance(module, LORA_LAYER_TYPES)


def owns_parameters(module: nn.Module) -> bool:
    """True for a module holding parameters itself (a candidate layer for any PEFT tuner)."""
    return any(True for _ in module.parameters(recurse=False))


LayerTest = Callable[[nn.Module], bool]


def describe_layers(model: nn.Module, fits: LayerTest) -> str:
    """Comma-separated "name (Type)" of the layers `fits` accepts, used in error messages."""
    rows = [f"{n} ({type(m).__name__})" for n, m in model.named_modules() if n and fits(m)]
    return ", ".join(rows) if rows else "(none)"


def resolve_targets(model: nn.Module, globs: Iterable[str], fits: LayerTest, every_glob: bool = True) -> list[str]:
    """Full names of the layers `fits` accepts matched by `globs` (containers select their layers inside).

    With `every_glob` each glob must match; otherwise (a class's defaults, some absent in a variant) only the union.
    """
    modules = dict(model.named_modules())
    chosen: list[str] = []
    for glob in globs:
        hits = [n for n in modules if n and matches(n, glob)]
        layers = [n for n, m in modules.items()
                  if fits(m) and any(is_under(n, hit) for hit in hits)]
        if not layers and every_glob:
            raise PeftConfigError(
                f"adapt target_modules entry {glob!r} matches no adaptable layer of {type(model).__name__}; "
                f"layers it can adapt: {describe_layers(model, fits)}")
        chosen.extend(n for n in layers if n not in chosen)
    if not chosen:
        raise PeftConfigError(f"adapt target_modules {list(globs)} match no adaptable layer of "
                              f"{type(model).__name__}; layers it can adapt: {describe_layers(model, fits)}")
    return chosen


def max_rank(layer: nn.Module) -> int:
    """Largest useful rank of ΔW for `layer`: min of the two sides of its (out, in·kernel) weight matrix."""
    if isinstance(layer, nn.Linear):
        return min(layer.in_features, layer.out_features)
    if isinstance(layer, nn.Embedding):
        return min(layer.num_embeddings, layer.embedding_dim)
    if isinstance(layer, nn.modules.conv._ConvNd):
        fan_in = layer.in_channels // layer.groups * math.prod(layer.kernel_size)
        return min(layer.out_channels, fan_in)
    raise PeftConfigError(f"no rank bound known for {type(layer).__name__}")


def check_mergeable(model: nn.Module, names: Iterable[str]) -> None:
    """Reject conv layers whose adapted form PEFT cannot merge or computes differently from the merged conv."""
    for name in names:
        layer = model.get_submodule(name)
        if not isinstance(layer, nn.modules.conv._ConvNd):
            continue
        if layer.groups > 1:
            raise PeftConfigError(
                f"layer {name!r} is a grouped/depthwise conv (groups={layer.groups}): PEFT cannot merge adapters "
                "into it (merged evaluation and export would fail); drop it from adapt.target_modules")
        if any(d != 1 for d in layer.dilation) or layer.padding_mode != "zeros":
            raise PeftConfigError(
                f"layer {name!r} has dilation={layer.dilation}, padding_mode={layer.padding_mode!r}: PEFT's conv "
                "adapter ignores both, so adapted and merged outputs would differ; drop it from adapt.target_modules")
