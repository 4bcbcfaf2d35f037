#!/usr/bin/env bash
# Issue #7, result 4: Power / Brown et al. — ÷ mod 97 grokking with last-layer activation ID (3 settings × 3 seeds).
# Writes outputs/repro/grokking_id/ and packs its small files into ${OUT:-outputs/repro}/grokking_id.tar.gz.
# Extra arguments go to repro/run.py: --budget SECONDS, --jobs N, --seeds 0,1, --dry-run, --smoke (CPU check).
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 repro/run.py grokking_id "$@"
