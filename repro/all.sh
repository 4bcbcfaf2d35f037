#!/usr/bin/env bash
# Every reproduction of issue #7 in three batches, highest priority first; each batch runs its results
# concurrently on one GPU (16 processes), stops itself after $BUDGET seconds if BUDGET is set, then re-aggregates
# what finished and packs ${OUT:-outputs/repro}/<result>.tar.gz. Planned GPU minutes on one H100 in brackets.
#   batch 1 [≈5.5]: li_mnist (1) + lora_vs_subspace (3)
#   batch 2 [≈12]:  grokking_id (4) + finetune_id (5)
#   batch 3 [≈8]:   reproject (6) + memorisation (2) + li_mnist_grid (1)
# Then figures and docs/results.md. A batch stopped by BUDGET resumes when run again. Extra arguments go to every
# repro/run.py call (e.g. --seeds 0,1).
set -uo pipefail
cd "$(dirname "$0")/.."
BUDGET=${BUDGET:-}
status=0
python3 repro/run.py li_mnist lora_vs_subspace ${BUDGET:+--budget "$BUDGET"} "$@" || status=1
python3 repro/run.py grokking_id finetune_id ${BUDGET:+--budget "$BUDGET"} "$@" || status=1
python3 repro/run.py reproject memorisation li_mnist_grid ${BUDGET:+--budget "$BUDGET"} "$@" || status=1
python3 repro/figures.py || status=1
exit $status
