"""The runs a sweep needs: baseline seeds plus values × seeds, each with its job overrides."""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from idlab.sweep.spec import SweepConfigError, SweepSpec

BASELINE = "baseline"
POINT = "point"
FULL_ADAPTATION = "adapt=full"


@dataclass(frozen=True)
class PlannedRun:
    """One run of the sweep: what it measures and the overrides that launch it."""

    role: str  # BASELINE or POINT
    value: float | None  # the swept value (None for the baseline)
    seed: int
    overrides: tuple[str, ...]
    key: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for plan.json."""
        return {"role": self.role, "value": self.value, "seed": self.seed, "overrides": list(self.overrides),
                "key": self.key}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PlannedRun":
        """Inverse of to_dict."""
        return cls(data["role"], data["value"], int(data["seed"]), tuple(data["overrides"]), data["key"])


def format_value(value: float) -> str:
    """An override value: integers without a decimal point, floats with full precision."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def point_run(spec: SweepSpec, base: Sequence[str], value: float, seed: int) -> PlannedRun:
    """A run at one swept value and seed."""
    value = int(value) if float(value).is_integer() else float(value)
    overrides = (*base, *spec.overrides, f"{spec.param}={format_value(value)}", f"{spec.seed_key}={seed}")
    return PlannedRun(POINT, value, seed, overrides)


def baseline_runs(spec: SweepSpec, base: Sequence[str]) -> list[PlannedRun]:
    """Full training of the same config, one per seed (none when the baseline is a given number)."""
    if not spec.baseline_is_measured:
        return []
    return [PlannedRun(BASELINE, None, seed, (*base, *spec.overrides, FULL_ADAPTATION, *spec.baseline_overrides,
                                              f"{spec.seed_key}={seed}"))
            for seed in spec.seeds]


def point_runs(spec: SweepSpec, base: Sequence[str], values: Iterable[float]) -> list[PlannedRun]:
    """Runs for these values × the spec's seeds."""
    return [point_run(spec, base, v, s) for v in values for s in spec.seeds]


def grid_runs(spec: SweepSpec, base: Sequence[str]) -> list[PlannedRun]:
    """The whole grid: baseline seeds then every value × seed."""
    return baseline_runs(spec, base) + point_runs(spec, base, spec.values)


def check_base_overrides(spec: SweepSpec, base: Sequence[str]) -> None:
    """The sweep sets the swept key and the seed itself; the same keys on the command line are an error."""
    owned = {spec.param, spec.seed_key}
    for override in base:
        key = override.split("=", 1)[0].lstrip("~+")
        if key in owned:
            raise SweepConfigError(f"override {override!r} sets {key}, which the sweep sets for every run; "
                                   f"drop it and change sweep.values / sweep.seeds instead")


def with_keys(runs: Sequence[PlannedRun], keys: Sequence[str]) -> list[PlannedRun]:
    """The runs with their config keys filled in."""
    return [replace(run, key=key) for run, key in zip(runs, keys, strict=True)]


def run_name(run: PlannedRun, param: str) -> str:
    """The run as tensorboard lists it: its role or swept value, then its seed (baseline/seed=0, adapt.d=750/seed=1)."""
    head = BASELINE if run.role == BASELINE else f"{param}={format_value(run.value)}"
    return f"{head}/seed={run.seed}"


def tensorboard_overrides(name: str, loggers: Mapping[str, Any] | None, root: Path) -> tuple[str, ...]:
    """Overrides putting the events of every TensorBoardLogger in `loggers` (a config's logger node) at
    root/<name>, so tensorboard names the run by what it is; no override when the run has no such logger."""
    group, version = name.rsplit("/", 1)
    out: list[str] = []
    for key, node in (loggers or {}).items():
        if isinstance(node, Mapping) and str(node.get("_target_", "")).endswith("TensorBoardLogger"):
            out += [f"logger.{key}.save_dir={_quoted(str(root))}", f"logger.{key}.name={_quoted(group)}",
                    f"logger.{key}.version={_quoted(version)}"]
    return tuple(out)


def _quoted(value: str) -> str:
    """A Hydra override value taken literally (names hold '=', paths may hold spaces)."""
    return "'" + value.replace("'", "\\'") + "'"
