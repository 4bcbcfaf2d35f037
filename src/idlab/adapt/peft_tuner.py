"""Any PEFT tuner (VeRA, FourierFT, TinyLoRA, LoHa, …) by name, with its config given as a dict."""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from idlab.adapt.peft_targets import PeftConfigError, owns_parameters
from idlab.adapt.peft_wrap import PeftAdaptation, exact_names_regex


def squash(name: str) -> str:
    """Tuner name in a spelling-insensitive form ("Fourier-FT" → "fourierft")."""
    return "".join(ch for ch in name.lower() if ch.isalnum())


def adapts_layers(config_class: type) -> bool:
    """True for tuners that wrap layers chosen by `target_modules` (not prompt/prefix tuning)."""
    from peft.config import PromptLearningConfig

    fields = {f.name for f in dataclasses.fields(config_class)}
    return "target_modules" in fields and not issubclass(config_class, PromptLearningConfig)


def tuner_config_class(tuner: str) -> type:
    """PEFT's config class for `tuner`; prompt-learning tuners and unknown names are refused."""
    import peft
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING

    table = {squash(t.value): (t.value.lower(), cls) for t, cls in PEFT_TYPE_TO_CONFIG_MAPPING.items()}
    usable = sorted(name for name, cls in table.values() if adapts_layers(cls))
    if squash(tuner) not in table:
        raise PeftConfigError(f"adapt.tuner={tuner!r} is not a PEFT {peft.__version__} tuner; "
                              f"choose one of: {', '.join(usable)}")
    _, cls = table[squash(tuner)]
    if not adapts_layers(cls):
        raise PeftConfigError(f"adapt.tuner={tuner!r} does not adapt layers of a plain model (prompt tuning "
                              f"needs a transformers language model); choose one of: {', '.join(usable)}")
    return cls


def plain(value: Any) -> Any:
    """Hydra/OmegaConf containers turned into dicts and lists, recursively."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [plain(v) for v in value]
    return value


class PeftTuner(PeftAdaptation):
    """The PEFT tuner `tuner` built from `config` (PEFT's own field names); targets are idlab globs."""

    adapted_head = "tuner"
    log_prefix = "peft"

    def __init__(self, tuner: str, config: Mapping[str, Any] | None = None,
                 target_modules: Sequence[str] | str | None = None, head: str = "train",
                 init_from: str | None = None, reinit: Sequence[str] | None = None) -> None:
        """Look the tuner up and check that `config` only names fields its config class has."""
        from peft import PeftConfig

        self.config_class = tuner_config_class(str(tuner))
        self.tuner = str(tuner)
        self.config = plain(config or {})
        fields = {f.name for f in dataclasses.fields(self.config_class)}
        reserved = {"target_modules": "adapt.target_modules", "modules_to_save": "adapt.head",
                    "peft_type": "adapt.tuner", "task_type": "nothing (classification is idlab's)"}
        taken = sorted(set(self.config) & reserved.keys())
        if taken:
            raise PeftConfigError(f"adapt.config.{taken[0]} is set by idlab; use {reserved[taken[0]]} instead")
        unknown = sorted(set(self.config) - fields)
        if unknown:
            own = fields - reserved.keys() - {f.name for f in dataclasses.fields(PeftConfig)}
            raise PeftConfigError(f"adapt.config has {unknown}, not fields of {self.config_class.__name__}; "
                                  f"its fields: {', '.join(sorted(own))}")
        super().__init__(target_modules, head, init_from, reinit)

    def layer_test(self, module: nn.Module) -> bool:
        """Any module holding parameters is a candidate; PEFT itself refuses types the tuner lacks."""
        return owns_parameters(module)

    def peft_config(self, model: nn.Module, names: list[str]):  # noqa: ANN201 - a peft.PeftConfig
        """The tuner's config with `target_modules` set to exactly `names`."""
        try:
            return self.config_class(**self.config, target_modules=exact_names_regex(names))
        except (ValueError, TypeError) as err:
            raise PeftConfigError(f"adapt.config is not a valid {self.config_class.__name__}: {err}") from err
