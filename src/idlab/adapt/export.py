"""Export a finished run (full, subspace, LoRA/PEFT) as the plain architecture's state dict (usable as adapt.init_from).

    python -m idlab.adapt.export outputs/<name>/<stamp> [--checkpoint last|best|FILE] [--out merged.pt]
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf, open_dict
from torch import nn


class ExportError(ValueError):
    """The run folder or checkpoint cannot be exported."""


def plain_state_dict(net: nn.Module) -> dict[str, torch.Tensor]:
    """The architecture's state dict with the adaptation folded in: θ0 + P·θ_d, W0 + ΔW, or the trained weights."""
    from idlab.adapt.subspace.model import SubspaceModel

    if isinstance(net, SubspaceModel):
        state = net.merged_state_dict()
    elif callable(getattr(net, "merge_and_unload", None)):
        from idlab.adapt.peft_wrap import merged_copy

        state = merged_copy(net).state_dict()
    else:
        state = net.state_dict()
    return {k: v.detach().cpu().clone() for k, v in state.items()}


def save_state_dict(state: dict[str, torch.Tensor], path: str | Path) -> Path:
    """torch.save to a temporary sibling, then rename over `path` (readers never see half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def checkpoint_path(run_dir: Path, checkpoint: str) -> Path:
    """`last`/`best` (with or without .ckpt), a file in checkpoints/, or a path to a .ckpt."""
    name = checkpoint if checkpoint.endswith(".ckpt") else f"{checkpoint}.ckpt"
    candidates = [run_dir / "checkpoints" / name, Path(checkpoint)]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"checkpoint {checkpoint!r} not found: neither {candidates[0]} nor {candidates[1]} "
                            "exists; use --checkpoint last, best, a file name in checkpoints/ or a .ckpt path")


def load_run(run_dir: str | Path, checkpoint: str = "last"):  # noqa: ANN201 - an idlab Classifier
    """Rebuild the run's Classifier from .hydra/config.yaml and load the chosen checkpoint into it (on the CPU)."""
    from idlab.run import build_module

    run_dir = Path(run_dir)
    config = run_dir / ".hydra" / "config.yaml"
    if not config.is_file():
        raise FileNotFoundError(f"{config} does not exist; give the folder of a finished run "
                                "(outputs/<name>/<stamp>) and a checkpoint in its checkpoints/")
    ckpt = checkpoint_path(run_dir, checkpoint)
    cfg = OmegaConf.load(config)
    with open_dict(cfg):
        cfg.paths.output_dir = str(run_dir)
        if "init_from" in cfg.adapt:  # the checkpoint already holds θ0; its source file may have moved
            cfg.adapt.init_from, cfg.adapt.reinit = None, []
    module = build_module(cfg, instantiate(cfg.data))
    blob = torch.load(ckpt, map_location="cpu", weights_only=True)
    if not isinstance(blob, dict) or "state_dict" not in blob:
        raise ExportError(f"{ckpt} is not a Lightning checkpoint of an idlab run (no 'state_dict')")
    try:
        module.load_state_dict(blob["state_dict"])
    except RuntimeError as err:
        raise ExportError(f"{ckpt} does not fit the run's config {config}: {err}") from err
    return module


def export_run(run_dir: str | Path, checkpoint: str = "last", out: str | Path | None = None) -> Path:
    """Write the run's plain merged weights (default RUN_DIR/merged.pt) and return the path."""
    module = load_run(run_dir, checkpoint)
    return save_state_dict(plain_state_dict(module.net), out if out is not None else Path(run_dir) / "merged.pt")


def main(argv: list[str] | None = None) -> None:
    """Command-line entry: print the written path."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="folder of a finished run (holds .hydra/ and checkpoints/)")
    parser.add_argument("--checkpoint", default="last", help="last (default), best, a file in checkpoints/ or a path")
    parser.add_argument("--out", default=None, help="output .pt (default RUN_DIR/merged.pt)")
    args = parser.parse_args(argv)
    print(export_run(args.run_dir, args.checkpoint, args.out))


if __name__ == "__main__":
    main()
