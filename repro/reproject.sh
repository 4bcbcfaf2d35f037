#!/usr/bin/env bash
# Issue #7, result 6: Seed 000 — subspace-train LeNet, export θ0 + P·θ_d, re-project with a fresh P, sweep d again.
# Writes outputs/repro/reproject/ and packs its small files into ${OUT:-outputs/repro}/reproject.tar.gz.
# Extra arguments go to repro/run.py: --budget SECONDS, --jobs N, --seeds 0,1, --dry-run, --smoke (CPU check).
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 repro/run.py reproject "$@"
