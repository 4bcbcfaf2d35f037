#!/usr/bin/env bash
# Issue #7, result 3: Hu et al. 2021 — LoRA rank sweep vs subspace d-sweep, LeNet on mnist_mini.
# Writes outputs/repro/lora_vs_subspace/ and packs its small files into ${OUT:-outputs/repro}/lora_vs_subspace.tar.gz.
# Extra arguments go to repro/run.py: --budget SECONDS, --jobs N, --seeds 0,1, --dry-run, --smoke (CPU check).
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 repro/run.py lora_vs_subspace "$@"
