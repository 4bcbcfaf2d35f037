#!/usr/bin/env bash
# Issue #7, result 2: Li et al. 2018 — real vs 100 % shuffled labels, d_int90 of training accuracy (2 d-sweeps).
# Writes outputs/repro/memorisation/ and packs its small files into ${OUT:-outputs/repro}/memorisation.tar.gz.
# Extra arguments go to repro/run.py: --budget SECONDS, --jobs N, --seeds 0,1, --dry-run, --smoke (CPU check).
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 repro/run.py memorisation "$@"
