#!/usr/bin/env bash
# Issue #7, result 1: Li et al. 2018 — FC width × depth grid, d_int90 vs D (5 d-sweeps).
# Writes outputs/repro/li_mnist_grid/ and packs its small files into ${OUT:-outputs/repro}/li_mnist_grid.tar.gz.
# Extra arguments go to repro/run.py: --budget SECONDS, --jobs N, --seeds 0,1, --dry-run, --smoke (CPU check).
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 repro/run.py li_mnist_grid "$@"
