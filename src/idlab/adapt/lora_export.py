"""Export a finished adapt=lora / adapt=peft run as a plain merged state dict (usable as adapt.init_from).

    python -m idlab.adapt.lora_export outputs/<name>/<stamp> [--checkpoint best.ckpt] [--out merged.pt]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf, open_dict

from idlab.adapt.peft_wrap import export_merged


def export_run(run_dir: str | Path, checkpoint: str = "last.ckpt", out: str | Path | None = None) -> Path:
    """Rebuild the run's model from .hydra/config.yaml, load its checkpoint, write the merged weights."""
    from idlab.run import build_module

    run_dir = Path(run_dir)
    config, ckpt = run_dir / ".hydra" / "config.yaml", run_dir / "checkpoints" / checkpoint
    for needed in (config, ckpt):
        if not needed.is_file():
            raise FileNotFoundError(f"{needed} does not exist; give the folder of a finished run "
                                    "(outputs/<name>/<stamp>) and a checkpoint in its checkpoints/")
    cfg = OmegaConf.load(config)
    with open_dict(cfg):
        cfg.paths.output_dir = str(run_dir)
        if "init_from" in cfg.adapt:  # the checkpoint already holds θ0; its source file may have moved
            cfg.adapt.init_from, cfg.adapt.reinit = None, []
    module = build_module(cfg, instantiate(cfg.data))
    module.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"])
    return export_merged(module.net, out if out is not None else run_dir / "merged.pt")


def main(argv: list[str] | None = None) -> None:
    """Command-line entry: print the written path."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="folder of a finished run (holds .hydra/ and checkpoints/)")
    parser.add_argument("--checkpoint", default="last.ckpt", help="file in checkpoints/ (default last.ckpt)")
    parser.add_argument("--out", default=None, help="output .pt (default RUN_DIR/merged.pt)")
    args = parser.parse_args(argv)
    print(export_run(args.run_dir, args.checkpoint, args.out))


if __name__ == "__main__":
    main()
