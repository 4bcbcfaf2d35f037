#!/usr/bin/env bash
# Issue #7, result 5: Aghajanyan et al., offline — pretrain a·b with snapshots, subspace d-sweeps on a÷b from each.
# Writes outputs/repro/finetune_id/ and packs its small files into ${OUT:-outputs/repro}/finetune_id.tar.gz.
# Extra arguments go to repro/run.py: --budget SECONDS, --jobs N, --seeds 0,1, --dry-run, --smoke (CPU check).
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 repro/run.py finetune_id "$@"
