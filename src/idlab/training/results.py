"""Run results on disk: metrics.json written atomically, with the code version that produced it."""
from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import subprocess
from pathlib import Path
from typing import Any

import idlab


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


@functools.lru_cache(maxsize=1)
def code_version() -> dict[str, Any]:
    """What code made a run: RESULTS_VERSION, the package version, a hash of the idlab sources, and the git commit
    with a dirty flag (tracked files changed) when idlab runs from a git checkout (else null)."""
    package = Path(idlab.__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes())
    commit = _git(package, "rev-parse", "HEAD")
    status = _git(package, "status", "--porcelain", "--untracked-files=no") if commit else None
    return {"results_version": idlab.RESULTS_VERSION, "package": idlab.__version__,
            "source_hash": digest.hexdigest()[:16], "commit": commit,
            "dirty": None if status is None else bool(status)}


def _git(where: Path, *args: str) -> str | None:
    """Output of a git command run in `where`, None when git or the repository is missing."""
    try:
        done = subprocess.run(["git", "-C", str(where), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None
