#!/usr/bin/env bash
# Issue #7, result 1: Li et al. 2018 on mnist_mini — FC vs LeNet d_int90 and shuffled pixels (4 d-sweeps, 120 runs).
# Writes outputs/repro/li_mnist/ and packs its small files into ${OUT:-outputs/repro}/li_mnist.tar.gz.
# Extra arguments go to repro/run.py: --budget SECONDS, --jobs N, --seeds 0,1, --dry-run, --smoke (CPU check).
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 repro/run.py li_mnist "$@"
