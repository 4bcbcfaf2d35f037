"""Alias of idlab.adapt.export (which also exports full and subspace runs); kept for existing commands.

    python -m idlab.adapt.lora_export outputs/<name>/<stamp> [--checkpoint best.ckpt] [--out merged.pt]
"""
from __future__ import annotations

from idlab.adapt.export import export_run, main

__all__ = ["export_run", "main"]

if __name__ == "__main__":
    main()
