#!/usr/bin/env bash
# Multi-GPU check (a correctness check on a 2-GPU machine, not a timing): train.py under trainer=ddp on 2 GPUs
# with 64 examples per rank must match one GPU at batch 128 (same global batch, same data order), and the
# activation-ID callback must run under DDP without a hang. Results: docs/benchmarks.md#ddp.
#   bash bench/ddp_equivalence.sh            # prints metrics and the θ_d difference; logs go to ${OUT:-/tmp}
set -u
cd "$(dirname "$0")/.."
LOGS=${OUT:-/tmp}
ROOT=outputs/ddp_equivalence
Q="++callbacks.progress_bar=null +trainer.enable_progress_bar=false logger=none"
COMMON="+exp=li_mnist_fc data=mnist_mini adapt.d=750 trainer.max_epochs=3 optim.optimizer.lr=0.01 trainer.deterministic=true"
python3 train.py $COMMON data.batch_size=128 hydra.run.dir=$ROOT/one $Q > "$LOGS/ddp_one.log" 2>&1
echo "1 GPU rc=$?"
timeout 300 python3 train.py $COMMON trainer=ddp trainer.devices=2 data.batch_size=64 hydra.run.dir=$ROOT/two $Q \
  > "$LOGS/ddp_two.log" 2>&1
echo "2 GPUs rc=$?"
timeout 300 python3 train.py +exp=math_equations_id trainer=ddp trainer.devices=2 trainer.max_steps=1000 \
  data.batch_size=256 hydra.run.dir=$ROOT/grok $Q > "$LOGS/ddp_grok.log" 2>&1
echo "2 GPUs with activation ID rc=$?"
python3 - "$ROOT" <<'PY'
import json, sys
from pathlib import Path
import torch
root = Path(sys.argv[1])
for run in ("one", "two", "grok"):
    m = json.loads((root / run / "metrics.json").read_text())
    print(run, {k: round(m[k], 4) for k in ("test/acc", "val/acc", "epoch", "global_step") if k in m})
a, b = (torch.load(root / r / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]["net.theta_d"]
        for r in ("one", "two"))
print(f"theta_d: max |1 GPU - 2 GPUs| = {(a - b).abs().max().item():.3g}, norms {a.norm():.4f} / {b.norm():.4f}")
rows = (root / "grok" / "id.csv").read_text().splitlines()
print(f"activation ID under DDP: {len(rows) - 1} rows in id.csv, steps {sorted({r.split(',')[0] for r in rows[1:]})}")
PY
