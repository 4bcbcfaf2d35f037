"""Load θ0 from an earlier run's checkpoint (fine-tuning intrinsic dimension)."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


class InitFromError(ValueError):
    """`adapt.init_from` points at something that cannot initialise this model."""


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Architecture state dict from a Lightning .ckpt of a full-training run or a plain saved state dict."""
    path = Path(path)
    if not path.is_file():
        raise InitFromError(f"adapt.init_from={path} does not exist; give the path of an earlier run's "
                            "checkpoints/last.ckpt (or an exported state dict .pt)")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means "not a checkpoint"
        raise InitFromError(f"adapt.init_from={path} is not a PyTorch checkpoint ({err})") from err
    state = blob.get("state_dict", blob) if isinstance(blob, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InitFromError(f"adapt.init_from={path} holds no state dict of tensors")
    if any(k.startswith("net.") for k in state):
        state = {k[len("net."):]: v for k, v in state.items() if k.startswith("net.")}
    return state


def check_reinit(model: nn.Module, reinit: tuple[str, ...] | list[str]) -> None:
    """Every `adapt.reinit` entry must name a module of the model (else it would silently re-initialise nothing)."""
    names = [n for n, _ in model.named_modules() if n]
    unknown = [r for r in reinit if r not in names]
    if unknown:
        raise InitFromError(f"adapt.reinit names {unknown} that {type(model).__name__} does not have; its modules "
                            f"are: {', '.join(names)}")


def load_base_weights(model: nn.Module, path: str | Path, reinit: tuple[str, ...] = ()) -> None:
    """Copy a checkpoint's tensors into `model`; modules named in `reinit` keep their fresh init."""
    check_reinit(model, reinit)
    state = read_state_dict(path)
    own = model.state_dict()
    skip = lambda key: any(key == r or key.startswith(r + ".") for r in reinit)  # noqa: E731
    wanted = {k for k in own if not skip(k)}
    missing = sorted(wanted - state.keys())
    unexpected = sorted(k for k in state.keys() - own.keys() if not skip(k))
    mismatched = sorted(f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                        for k in wanted & state.keys() if state[k].shape != own[k].shape)
    if missing or unexpected or mismatched:
        lines = [f"adapt.init_from={path} does not fit this model (a different architecture or size?)"]
        for title, items in (("missing in checkpoint", missing), ("not in model", unexpected),
                             ("shape mismatch", mismatched)):
            if items:
                lines.append(f"  {title}: {', '.join(items[:10])}" + (" …" if len(items) > 10 else ""))
        lines.append("  use a checkpoint of the same model config, or list a new task head in adapt.reinit")
        raise InitFromError("\n".join(lines))
    with torch.no_grad():
        for k in wanted:
            own[k].copy_(state[k])
