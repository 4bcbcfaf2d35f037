# Sourced by every repro/<scale>/<result>.sh. A result's whole recipe is its script plus the configs/exp files it
# names; this file holds only the knobs of a call and the three commands the scripts use. Knobs (environment):
#   ROOT=outputs/repro   result folders go to $ROOT/<scale>/<result>/ (keep it relative: paths enter run keys)
#   JOBS=16              runs side by side (Hydra's joblib launcher), split among the sweeps a script starts at once
#                        (`share N`); 1: one after another, in-process
#   SEEDS=0,1,2          replaces every sweep's and loop's seeds (default: the exp file's / the script's)
#   EPOCHS=N             replaces trainer.max_epochs of the MNIST studies other than memorisation (default: exp's)
#   MEM_EPOCHS=N         replaces trainer.max_epochs of the memorisation sweeps
#   OVERRIDES="K=V ..."  Hydra overrides appended to every sweep.py / train.py command (e.g. trainer.devices=1)
#   IDLAB_DATA_DIR=DIR   the folder holding MNIST/raw for data=mnist (the official .gz files are read in place)
#   PYTHON=python3       the interpreter;  DRY=1: print the commands, run nothing
#   REPRO_COMMANDS=FILE  append every command to FILE (repro/call.py records them in repro.json)
# A rerun resumes: sweep.py skips runs it already has, train_once keeps a run that finished.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=${ROOT:-outputs/repro}
JOBS=${JOBS:-16}
HERE=$ROOT/$(basename "$(dirname "$0")")/$(basename "$0" .sh)
QUIET=(++callbacks.progress_bar=null +trainer.enable_progress_bar=false)
LAUNCHER=()
EPOCHS_ARG=(${EPOCHS:+"trainer.max_epochs=$EPOCHS"})
MEM_EPOCHS_ARG=(${MEM_EPOCHS:+"trainer.max_epochs=$MEM_EPOCHS"})
read -r -a EXTRA <<< "${OVERRIDES:-}"
failed=0

quote() {  # the arguments as one copy-pasteable shell line, single-quoting only where needed
  local a q=\' out=()
  for a in "$@"; do
    if [[ $a =~ ^[A-Za-z0-9_./:=+@%,^-]+$ ]]; then out+=("$a"); else out+=("'${a//$q/$q\\$q$q}'"); fi
  done
  echo "${out[*]}"
}

run() {  # run python ARGS...: print and record the command, run it (unless DRY=1); a failure is counted, not fatal
  local line rc
  line=$(quote "$@")
  echo "+ $line"
  if [ -n "${REPRO_COMMANDS:-}" ]; then echo "$line" >> "$REPRO_COMMANDS"; fi
  [ "${DRY:-0}" = 1 ] && return 0
  "${PYTHON:-python3}" "${@:2}"
  rc=$?
  if [ $rc != 0 ]; then echo "exit $rc: $line"; failed=1; fi
  return $rc
}

share() {  # share N: the next sweeps run N at a time (started with &), so each gets JOBS / N parallel runs
  local each=$(( JOBS / $1 > 1 ? JOBS / $1 : 1 ))
  LAUNCHER=()
  if [ "$each" -gt 1 ]; then LAUNCHER=(hydra/launcher=joblib "hydra.launcher.n_jobs=$each"); fi
}
share 1

seeds() {  # seeds DEFAULT: the seeds of a loop, e.g. `for seed in $(seeds 0,1,2)`
  echo "${SEEDS:-$1}" | tr , ' '
}

sweep() {  # sweep FOLDER ARGS...: python sweep.py ARGS into $HERE/FOLDER
  local folder=$1
  shift
  run python sweep.py "$@" ${SEEDS:+"sweep.seeds=[$SEEDS]"} "${EXTRA[@]}" "sweep.dir=$HERE/$folder" "${LAUNCHER[@]}" \
    "${QUIET[@]}"
}

train_once() {  # train_once FOLDER ARGS...: python train.py ARGS into $HERE/FOLDER unless $HERE/FOLDER/$KEEP_IF exists
  local dir=$HERE/$1
  shift
  if [ -f "$dir/${KEEP_IF:-metrics.json}" ]; then echo "kept $dir (finished earlier)"; return 0; fi
  if [ -d "$dir" ] && [ "${DRY:-0}" != 1 ]; then mv "$dir" "$dir.unfinished.$(date +%s)"; fi  # set aside, not lost
  run python train.py "$@" "${EXTRA[@]}" "hydra.run.dir=$dir" "${QUIET[@]}"
}

export_once() {  # export_once RUN FILE: the plain weights (θ0 + P·θ_d) of a finished run, once
  [ -f "$HERE/$2" ] || run python -m idlab.adapt.export "$HERE/$1" --checkpoint last --out "$HERE/$2"
}

wait_all() {  # wait for the commands started with &; any failure is counted
  local pid
  for pid in $(jobs -p); do wait "$pid" || failed=1; done
}

finish() {  # the script's exit status: 1 when any command failed
  wait_all
  exit $failed
}
