"""The `sweep` block of an experiment, validated into a SweepSpec."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

SEARCHES = ("grid", "bisect")


class SweepConfigError(ValueError):
    """The sweep cannot start: bad sweep block, launcher, directory or value range."""


@dataclass(frozen=True)
class SweepSpec:
    """What to sweep and how to read the answer (one experiment's `sweep` block plus defaults)."""

    param: str
    values: tuple[float, ...]
    seeds: tuple[int, ...] = (0,)
    metric: str = "test/acc"
    baseline: str | float = "full"
    threshold: float = 0.9
    overrides: tuple[str, ...] = ()
    baseline_overrides: tuple[str, ...] = ()
    search: str = "grid"
    tolerance: float = 0.1
    points_per_round: int = 3
    max_rounds: int = 8
    bootstrap: int = 1000
    seed_key: str = "seed"
    dir: str | None = None
    runs_per_job: int = 1
    side_by_side: int = 1

    @property
    def integer(self) -> bool:
        """True when every value is a whole number, so bisect candidates are rounded to integers."""
        return all(float(v).is_integer() for v in self.values)

    @property
    def baseline_is_measured(self) -> bool:
        """True when the baseline comes from full-training runs rather than a given number."""
        return self.baseline == "full"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (written into plan.json and summary.json)."""
        out = asdict(self)
        out["values"] = list(self.values)
        out["seeds"] = list(self.seeds)
        out["overrides"] = list(self.overrides)
        out["baseline_overrides"] = list(self.baseline_overrides)
        return out

    @classmethod
    def from_dict(cls, block: Mapping[str, Any] | None) -> "SweepSpec":
        """Validate a plain-dict sweep block; every problem is reported with the key and the fix."""
        if not block or not (block.get("param") or block.get("values")):
            raise SweepConfigError(
                "no sweep block: the experiment needs a `sweep:` section with at least `param` and `values` "
                "(see docs/sweep.md), e.g. `sweep: {param: adapt.d, values: [100, 200, 400], seeds: [0, 1, 2]}`, "
                "or give them on the command line: sweep.param=adapt.d 'sweep.values=[100,200,400]'")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(block) - known)
        if unknown:
            raise SweepConfigError(f"unknown sweep key(s) {unknown}; valid keys are {sorted(known)}")
        if not block.get("param"):
            raise SweepConfigError("sweep.param is missing: name the config key to sweep, e.g. sweep.param=adapt.d")
        spec = cls(
            param=str(block["param"]),
            values=_values(block.get("values")),
            seeds=_seeds(block.get("seeds", [0])),
            metric=str(block.get("metric", "test/acc")),
            baseline=_baseline(block.get("baseline", "full")),
            threshold=_fraction(block.get("threshold", 0.9)),
            overrides=_strings("overrides", block.get("overrides") or []),
            baseline_overrides=_strings("baseline_overrides", block.get("baseline_overrides") or []),
            search=_choice("search", block.get("search", "grid"), SEARCHES),
            tolerance=_positive("tolerance", block.get("tolerance", 0.1)),
            points_per_round=_count("points_per_round", block.get("points_per_round", 3), minimum=2),
            max_rounds=_count("max_rounds", block.get("max_rounds", 8), minimum=1),
            bootstrap=_count("bootstrap", block.get("bootstrap", 1000), minimum=1),
            seed_key=str(block.get("seed_key", "seed")),
            dir=None if block.get("dir") in (None, "") else str(block["dir"]),
            runs_per_job=_count("runs_per_job", block.get("runs_per_job", 1), minimum=1),
            side_by_side=_count("side_by_side", block.get("side_by_side", 1), minimum=1),
        )
        if spec.side_by_side > spec.runs_per_job:
            raise SweepConfigError(f"sweep.side_by_side={spec.side_by_side} runs more runs at once than a job holds "
                                   f"(sweep.runs_per_job={spec.runs_per_job}); raise runs_per_job or lower "
                                   "side_by_side")
        if spec.search == "bisect" and len(spec.values) < 2:
            raise SweepConfigError(f"sweep.search=bisect searches between the smallest and largest of sweep.values; "
                                   f"give at least two values (got {list(spec.values)}), e.g. [10, 10000]")
        return spec


def _values(raw: Any) -> tuple[float, ...]:
    """Sorted, unique, positive numbers (log-scale axis and bisection need them)."""
    if raw is None or isinstance(raw, (str, bytes)) or not hasattr(raw, "__iter__") or len(list(raw)) == 0:
        raise SweepConfigError(f"sweep.values={raw!r} must be a non-empty list of numbers, e.g. [100, 200, 400]")
    out = []
    for v in raw:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise SweepConfigError(f"sweep.values contains {v!r}; every value must be a positive finite number "
                                   "(the baseline is configured separately with sweep.baseline)")
        out.append(int(v) if float(v).is_integer() else float(v))
    return tuple(sorted(set(out)))


def _seeds(raw: Any) -> tuple[int, ...]:
    """Unique integer seeds, in the given order."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = [raw]
    if raw is None or isinstance(raw, str) or len(list(raw)) == 0:
        raise SweepConfigError(f"sweep.seeds={raw!r} must be a non-empty list of integers, e.g. [0, 1, 2]")
    if any(isinstance(s, bool) or not isinstance(s, int) for s in raw):
        raise SweepConfigError(f"sweep.seeds={list(raw)!r} must contain integers only")
    return tuple(dict.fromkeys(int(s) for s in raw))


def _baseline(raw: Any) -> str | float:
    """'full' (measured by full training) or a positive number."""
    if raw == "full":
        return "full"
    if isinstance(raw, (int, float)) and not isinstance(raw, bool) and math.isfinite(raw) and raw > 0:
        return float(raw)
    raise SweepConfigError(f"sweep.baseline={raw!r} must be 'full' (train the same config with adapt=full) "
                           "or a positive number such as 0.98 (a known baseline metric)")


def _fraction(raw: Any) -> float:
    """A threshold fraction in (0, 1]."""
    if isinstance(raw, (int, float)) and not isinstance(raw, bool) and 0 < raw <= 1:
        return float(raw)
    raise SweepConfigError(f"sweep.threshold={raw!r} must be a fraction in (0, 1], e.g. 0.9 for d_int90")


def _positive(name: str, raw: Any) -> float:
    """A positive float."""
    if isinstance(raw, (int, float)) and not isinstance(raw, bool) and raw > 0:
        return float(raw)
    raise SweepConfigError(f"sweep.{name}={raw!r} must be a positive number")


def _count(name: str, raw: Any, minimum: int) -> int:
    """An integer at least `minimum`."""
    if isinstance(raw, int) and not isinstance(raw, bool) and raw >= minimum:
        return raw
    raise SweepConfigError(f"sweep.{name}={raw!r} must be an integer >= {minimum}")


def _choice(name: str, raw: Any, choices: tuple[str, ...]) -> str:
    """One of `choices`."""
    if raw in choices:
        return str(raw)
    raise SweepConfigError(f"sweep.{name}={raw!r} is not one of {list(choices)}")


def _strings(name: str, raw: Any) -> tuple[str, ...]:
    """A list of override strings."""
    if isinstance(raw, str) or not all(isinstance(s, str) for s in raw):
        raise SweepConfigError(f"sweep.{name}={raw!r} must be a list of override strings, e.g. ['trainer.max_epochs=5']")
    return tuple(raw)
