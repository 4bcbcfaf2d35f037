"""Measure intrinsic dimension: `python sweep.py +exp=NAME [overrides]` runs/resumes the experiment's sweep
block through Hydra's launcher; `python sweep.py --report DIR` re-aggregates a sweep folder (docs/sweep.md)."""
import sys
from pathlib import Path

from idlab.sweep.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], config_dir=Path(__file__).resolve().parent / "configs"))
