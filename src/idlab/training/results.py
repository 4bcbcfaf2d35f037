"""Run results on disk: metrics.json written atomically."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any


def write_json_atomic(path: str | Path, payload: dict[str, Any]) -> None:
    """Write JSON to a temporary sibling, fsync, then rename over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump(payload, f, indent=2, sort_keys=True, allow_nan=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def scalar_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """Plain floats from Lightning's callback_metrics (tensors → floats, NaN kept as NaN)."""
    out = {}
    for key, value in metrics.items():
        value = float(value.item() if hasattr(value, "item") else value)
        out[key] = value if math.isfinite(value) else float("nan")
    return out
