"""Every reproduction by name, in priority order, with its expected GPU minutes (one H100, 16 CPU cores)."""
from __future__ import annotations

from typing import Callable

from repro import plans_mnist, plans_modular
from repro.steps import Result, Settings

BUILDERS: dict[str, Callable[[Settings], Result]] = {
    "li_mnist": plans_mnist.li_mnist,
    "lora_vs_subspace": plans_mnist.lora_vs_subspace,
    "reproject": plans_mnist.reproject,
    "grokking_id": plans_modular.grokking_id,
    "finetune_id": plans_modular.finetune_id,
    "li_mnist_grid": plans_mnist.li_mnist_grid,
    "memorisation": plans_mnist.memorisation,
}
# Planning estimates: runs × steps against the measured 681 steps/s of 12 FC runs sharing one
# H100 (docs/benchmarks.md) and ~9 ms per transformer step in one process; see repro/README.md. finetune_id and
# memorisation: their 2026-11-22 H100 wall times.
GPU_MINUTES = {"li_mnist": 4.5, "lora_vs_subspace": 1.0, "reproject": 2.5, "grokking_id": 5.5, "finetune_id": 12.0,
               "li_mnist_grid": 2.5, "memorisation": 4.5}
ISSUE_ITEM = {"li_mnist": 1, "li_mnist_grid": 1, "memorisation": 2, "lora_vs_subspace": 3, "grokking_id": 4,
              "finetune_id": 5, "reproject": 6}


def build(name: str, settings: Settings, extended: bool = False) -> Result:
    """The named reproduction's plan; an unknown name lists the known ones."""
    if name not in BUILDERS:
        raise KeyError(f"unknown reproduction {name!r}; choose from: {', '.join(BUILDERS)}")
    if name == "grokking_id":
        return plans_modular.grokking_id(settings, extended)
    return BUILDERS[name](settings)
