"""A run's identity: a hash of its resolved config without hydra, sweep and path settings, and of the code's
RESULTS_VERSION (runs made under behaviour that computes differently never share a key)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from idlab import RESULTS_VERSION

# Keys that say where or how a run is launched, executed or recorded, not what it computes (a sweep names each
# run's tensorboard folder through logger.*; graph.* picks eager or graph-captured steps of the same computation).
EXCLUDED_KEYS = ("hydra", "sweep", "logger", "graph")
# Interpolations that differ between otherwise identical runs are kept as their literal text.
_VOLATILE_RESOLVERS = ("${hydra:", "${now:")


def comparable(cfg: DictConfig) -> dict[str, Any]:
    """The config as plain data: paths.* replaced by placeholders, volatile interpolations left unresolved."""
    work = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    for key in EXCLUDED_KEYS:
        work.pop(key, None)
    if isinstance(work.get("paths"), DictConfig):
        work.paths = {k: f"<paths.{k}>" for k in work.paths}
    return _resolve(work)


def run_key(cfg: DictConfig) -> str:
    """16 hex digits identifying what a run computes (config and RESULTS_VERSION); equal keys mean
    interchangeable results."""
    blob = json.dumps({"config": comparable(cfg), "results_version": RESULTS_VERSION}, sort_keys=True, default=str,
                      separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def flat_config(run_dir: Path) -> dict[str, Any] | None:
    """A run folder's resolved .hydra/config.yaml as {dotted key: value} (as `comparable`), None if unreadable."""
    try:
        cfg = OmegaConf.load(Path(run_dir) / ".hydra" / "config.yaml")
    except Exception:  # noqa: BLE001 - a missing or unparsable file: nothing to compare
        return None
    out: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict) and node:
            for key, value in node.items():
                walk(value, f"{prefix}{key}.")
        else:
            out[prefix[:-1]] = node
    walk(comparable(cfg), "")
    return out


def _resolve(node: DictConfig | ListConfig) -> Any:
    """Resolve leaf by leaf; a leaf that cannot be resolved outside a running job keeps its raw text."""
    if isinstance(node, DictConfig):
        return {str(k): _leaf(node, k) for k in node.keys()}
    return [_leaf(node, i) for i in range(len(node))]


def _leaf(parent: DictConfig | ListConfig, key: Any) -> Any:
    """One child, resolved where that is deterministic."""
    node = parent._get_node(key)  # noqa: SLF001 - the unresolved node
    if isinstance(node, (DictConfig, ListConfig)) and not node._is_interpolation():  # noqa: SLF001
        return _resolve(node)
    raw = node._value()  # noqa: SLF001
    if isinstance(raw, str) and any(r in raw for r in _VOLATILE_RESOLVERS):
        return raw
    try:
        value = parent[key]
        if isinstance(value, (DictConfig, ListConfig)):
            return OmegaConf.to_container(value, resolve=True)
        return value
    except Exception:  # noqa: BLE001 - missing values or resolvers that need a running job
        return str(raw)
