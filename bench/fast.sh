#!/usr/bin/env bash
# Issue 12 on one GPU, one command: graph-captured steps against eager (bench/graph_check.py), framework overhead
# (bench/train_step.py) and Li et al.'s FC grid end to end (bench/sweep_throughput.py) in several worker layouts.
#   [SWEEPS="11:3:3 17:1:1"] bash bench/fast.sh [RESULTS] [PARTS] [TARBALL]
# SWEEPS lists jobs:runs_per_job:side_by_side layouts of the sweep part.
# RESULTS (default outputs/bench_fast) receives every part's log and tables; PARTS is a subset of
# "check step sweep"; TARBALL, if given, is rewritten after every part with RESULTS packed in it (for machines
# that only hand back a few files). Each part runs under its own time limit; a failed part does not stop the
# others. The first sweep starts with whatever Triton cache the earlier parts left (fresh machine: cold).
set -u
RES=${1:-outputs/bench_fast}
PARTS=${2:-check step sweep}
TARBALL=${3:-}
mkdir -p "$RES"
export PYTHONUNBUFFERED=1
START=$(date +%s)
part() {  # part NAME LIMIT_S COMMAND...
  local name=$1 limit=$2
  shift 2
  echo "== $name (limit ${limit}s) at $(( $(date +%s) - START ))s"
  timeout "$limit" "$@" > "$RES/$name.log" 2>&1
  echo "   rc=$? after $(( $(date +%s) - START ))s"
  if [ -n "$TARBALL" ]; then tar czf "$TARBALL" -C "$RES" .; fi
}
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  python3 -c "import torch, pytorch_lightning, triton; print(torch.__version__, pytorch_lightning.__version__, triton.__version__)"
  nproc; date -u; } > "$RES/device.txt" 2>&1
case " $PARTS " in *" check "*) part graph_check 150 python3 bench/graph_check.py --out "$RES" ;; esac
case " $PARTS " in *" step "*) part train_step 130 python3 bench/train_step.py --out "$RES" ;; esac
case " $PARTS " in *" sweep "*)
  python3 -c "from idlab.data import MNISTMini; MNISTMini(cache_dir='data').digits()"  # the parsed-digits cache
  for layout in ${SWEEPS:-11:3:3 17:1:1}; do  # jobs:runs_per_job:side_by_side
    IFS=: read -r jobs per side <<< "$layout"
    part "sweep_j${jobs}_r${per}_s${side}" 120 python3 bench/sweep_throughput.py --jobs "$jobs" --runs-per-job "$per" \
      --side-by-side "$side" --out "$RES/sweep" --work /tmp/idlab_sweeps --timeout 110
  done ;;
esac
echo "done after $(( $(date +%s) - START ))s"
cat "$RES"/*.md 2>/dev/null
grep -h '^| [a-z]*[0-9]*_r' "$RES"/sweep_*.log 2>/dev/null
