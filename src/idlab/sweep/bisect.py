"""Adaptive log-scale search for d_int: which values to measure next, given what has been measured."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

from idlab.sweep.analysis import first_reaching


@dataclass(frozen=True)
class Bracket:
    """The search state: the largest value known to fail below the smallest value known to pass."""

    low: float | None  # None: nothing measured fails below `high`
    high: float | None  # None: nothing measured reaches the target
    done: bool
    reason: str


def log_points(low: float, high: float, count: int, integer: bool, interior: bool) -> list[float]:
    """`count` points evenly spaced in log between low and high (endpoints excluded when `interior`)."""
    if interior:
        raw = [low * (high / low) ** (i / (count + 1)) for i in range(1, count + 1)]
    else:
        raw = [low * (high / low) ** (i / (count - 1)) for i in range(count)] if count > 1 else [low]
    points = [float(round(p)) if integer else p for p in raw]
    if interior:
        points = [p for p in points if low < p < high]
    return sorted(set(points))


def bracket(means: Mapping[float, float], target: float, tolerance: float, integer: bool) -> Bracket:
    """Where the threshold lies among the measured seed-means, and whether the search can stop."""
    if not means:
        return Bracket(None, None, False, "nothing measured yet")
    high = first_reaching(list(means), list(means.values()), target)
    if high is None:
        return Bracket(max(means), None, True, f"never reached up to {max(means):g}; raise the largest sweep value")
    below = [v for v in means if v < high]
    if not below:
        return Bracket(None, high, True, f"reached already at the smallest value {high:g}; lower the smallest value")
    low = max(below)
    if high / low <= 1 + tolerance:
        return Bracket(low, high, True, f"bracketed within relative tolerance {tolerance:g}")
    if integer and high - low <= 1:
        return Bracket(low, high, True, "adjacent integers")
    return Bracket(low, high, False, "searching")


def next_candidates(means: Mapping[float, float], target: float, tolerance: float, count: int,
                    integer: bool, exclude: set[float] = frozenset()) -> list[float]:
    """The next round of values to measure (empty when the search is finished)."""
    state = bracket(means, target, tolerance, integer)
    if state.done or state.low is None or state.high is None:
        return []
    candidates = log_points(state.low, state.high, count, integer, interior=True)
    return [c for c in candidates if c not in means and c not in exclude and math.isfinite(c)]
