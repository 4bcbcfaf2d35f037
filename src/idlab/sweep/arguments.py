"""Command-line arguments of a sweep: sweep.* overrides, mandatory values, the sweep folder."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from idlab.sweep.launch import task_config
from idlab.sweep.spec import SweepConfigError, SweepSpec


def split_sweep_overrides(args: Sequence[str]) -> tuple[list[str], list[str]]:
    """sweep.* overrides (handled here, never part of a run's config) and everything else (for Hydra)."""
    if any(a in ("-m", "--multirun") for a in args):
        raise SweepConfigError("drop -m/--multirun: sweep.py launches its runs itself; choose the launcher with "
                               "hydra/launcher=basic|joblib|fork|submitit_local|slurm")
    sweep = [a for a in args if a.lstrip("~+").startswith("sweep.")]
    return sweep, [a for a in args if a not in sweep]


def apply_sweep_overrides(block: Any, overrides: Sequence[str]) -> dict[str, Any]:
    """The experiment's sweep block as a dict with command-line sweep.KEY=VALUE applied."""
    data = OmegaConf.to_container(block, resolve=True) if isinstance(block, DictConfig) else dict(block or {})
    for override in OverridesParser.create().parse_overrides(list(overrides)):
        key = override.key_or_group.split(".", 1)[1]
        if "." in key:
            raise SweepConfigError(f"{override.input_line}: sweep keys are flat (sweep.KEY=VALUE)")
        if override.is_delete():
            data.pop(key, None)
        else:
            data[key] = override.value()
    return data


def sweep_directory(spec: SweepSpec, probe: DictConfig) -> Path:
    """sweep.dir, else outputs/sweeps/<exp name, or the config's name> — stable, so a rerun resumes."""
    if spec.dir:
        return Path(spec.dir).expanduser().resolve()
    label = probe.hydra.runtime.choices.get("exp") or probe.get("name") or "default"
    return (Path(probe.hydra.runtime.cwd) / "outputs" / "sweeps" / str(label).replace("/", "_")).resolve()


def check_mandatory_values(probe: DictConfig) -> None:
    """Values the experiment marks ??? must be given on the command line before anything is planned."""
    missing = sorted(k for k in _literal_missing(OmegaConf.to_container(task_config(probe), resolve=False))
                     if not k.startswith("sweep."))
    if missing:
        raise SweepConfigError(f"{', '.join(missing)} must be set (the config marks them ???); give them on the "
                               f"command line, e.g. {missing[0]}=VALUE (see the experiment file's header)")


def _literal_missing(node: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose value is the literal ??? (interpolations are not resolved)."""
    if isinstance(node, dict):
        return [k for key, value in node.items() for k in _literal_missing(value, f"{prefix}{key}.")]
    if isinstance(node, list):
        return [k for i, value in enumerate(node) for k in _literal_missing(value, f"{prefix}{i}.")]
    return [prefix[:-1]] if node == "???" else []
