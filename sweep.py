"""Sweep entry point (d-sweeps, d_int90): being built; see docs/architecture.md."""
raise SystemExit("sweep.py is not available yet: run single experiments with `python train.py +exp=NAME`.")
