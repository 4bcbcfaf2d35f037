"""One device call: result scripts run in lanes until a budget, then every sweep is re-reported, each result recorded
(repro.json: commands, knobs, device, wall time, code version) and packed into $OUT/<scale>/<result>.tar.gz.

    python repro/call.py --budget 540 full/li_mnist,full/lora_vs_subspace,full/li_mnist_grid
    python repro/call.py --budget 330 mini/li_mnist,mini/li_mnist_grid mini/grokking_id,mini/finetune_id

Each argument is a lane: its results (repro/<scale>/<result>.sh) run one after another, the first first; lanes run
side by side, each with JOBS (default: CPU cores ÷ lanes) parallel runs per sweep. At the deadline every script still
running is stopped with its whole process group; what finished is kept, the rest is reported incomplete, and the same
command in a later call resumes (unpack the tarballs into --root/<scale>/ first). A tarball holds the small files
only (summaries, per-run metrics and configs, curves as CSV, exported θ_A), never checkpoints.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):
    sys.path.insert(0, str(REPO))
GRACE_S = 20.0
KEEP = {"summary.json", "results.csv", "plan.json", "metrics.json", "sweep_run.json", "id.csv", "scalars.csv",
        "repro.json", "config.yaml", "overrides.yaml"}
LIMIT_BYTES = 16 * 2**20
LOG_TAIL = 200
KNOBS = ("ROOT", "JOBS", "SEEDS", "EPOCHS", "MEM_EPOCHS", "SNAPSHOTS", "OVERRIDES", "IDLAB_DATA_DIR")


def run_script(name: str, deadline: float, env: dict[str, str], root: Path, scripts: Path) -> dict:
    """Run scripts/<name>.sh in its own process group until it ends or the deadline passes."""
    script = scripts / f"{name}.sh"
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    commands = folder / f".commands.{os.getpid()}.txt"
    commands.unlink(missing_ok=True)
    outcome = {"result": name, "script": str(script.relative_to(REPO)) if script.is_relative_to(REPO) else str(script),
               "started": time.time(), "status": "skipped", "returncode": None, "wall_s": 0.0}
    if deadline - time.monotonic() <= 1:
        return outcome
    with open(folder / "call.log", "a") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S%z')} bash {script}\n")
        log.flush()
        proc = subprocess.Popen(["bash", str(script)], cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                env={**env, "REPRO_COMMANDS": str(commands.resolve())}, start_new_session=True)
        try:
            outcome["returncode"] = proc.wait(timeout=max(deadline - time.monotonic(), 0.0))
            outcome["status"] = "done" if outcome["returncode"] == 0 else "failed"
        except subprocess.TimeoutExpired:
            outcome["returncode"], outcome["status"] = stop(proc), "stopped at the budget"
    outcome["wall_s"] = time.time() - outcome["started"]
    outcome["commands"] = commands.read_text().splitlines() if commands.is_file() else []
    commands.unlink(missing_ok=True)
    return outcome


def stop(proc: subprocess.Popen) -> int:
    """SIGTERM the whole process group (sweep.py, its launcher workers, train.py runs), SIGKILL after a grace."""
    for sig, grace in ((signal.SIGTERM, GRACE_S), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            return proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            continue
    return proc.wait()


def run_lanes(lanes: list[list[str]], deadline: float, env: dict[str, str], root: Path,
              scripts: Path) -> list[dict]:
    """Every lane in its own thread; within a lane the results run in order. Returns outcomes in lane order."""
    done: dict[str, dict] = {}

    def lane(names: list[str]) -> None:
        for name in names:
            done[name] = run_script(name, deadline, env, root, scripts)
    threads = [threading.Thread(target=lane, args=(names,)) for names in lanes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [done[name] for names in lanes for name in names]


def reaggregate(folder: Path) -> dict[str, str]:
    """`sweep.py --report` of every sweep folder under `folder`, finished or stopped: folder → outcome."""
    from idlab.sweep.report import report

    notes = {}
    for plan in sorted(folder.rglob("plan.json")):
        if "runs" in plan.relative_to(folder).parts:
            continue
        try:
            notes[str(plan.parent.relative_to(folder))] = f"runs {report(plan.parent)['runs']}"
        except Exception as err:  # noqa: BLE001 - one broken folder must not lose the others
            notes[str(plan.parent.relative_to(folder))] = f"report failed: {type(err).__name__}: {err}"
    return notes


def record(folder: Path, outcome: dict, invocation: str, budget: float | None, env: dict[str, str],
           notes: dict[str, str]) -> Path:
    """folder/repro.json (atomic): this call, with the earlier calls of the same result kept below it."""
    path = folder / "repro.json"
    earlier: list[dict] = []
    if path.is_file():
        previous = json.loads(path.read_text())
        earlier = [*previous.get("earlier_calls", []),
                   {k: previous.get(k) for k in ("invocation", "started_iso", "wall_s", "status", "device", "code")}]
    entry = {**outcome, "invocation": invocation, "budget_s": budget, "device": device(), "code": code_version(),
             "started_iso": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(outcome["started"])),
             "knobs": {k: env[k] for k in KNOBS if k in env}, "sweeps": notes, "earlier_calls": earlier}
    entry["wall_total_s"] = outcome["wall_s"] + sum(c.get("wall_s") or 0.0 for c in earlier)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(entry, indent=2, default=str) + "\n")
    os.replace(tmp, path)
    return path


def device() -> str:
    """The accelerator and CPU count of this machine, in words."""
    try:
        import torch

        if torch.cuda.is_available():
            names = sorted({torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())})
            return f"{torch.cuda.device_count()}× {', '.join(names)}, {os.cpu_count()} CPU cores"
    except Exception:  # noqa: BLE001 - a broken CUDA set-up still gets a description
        pass
    return f"CPU only ({platform.machine()}, {os.cpu_count()} cores)"


def code_version() -> dict[str, str | None]:
    """git HEAD (+dirty) where there is a checkout, and a hash of the code that ran (src, configs, repro, entry
    points), which identifies a copy without .git too: `python repro/call.py --code-version` prints it here."""
    digest = hashlib.sha256()
    files = [p for d in ("src", "configs", "repro") for p in sorted((REPO / d).rglob("*"))
             if p.is_file() and p.suffix in (".py", ".yaml", ".sh")] + [REPO / "sweep.py", REPO / "train.py"]
    for path in files:
        digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes() + b"\0")
    git = None
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src", "configs", "repro"], cwd=REPO,
                               capture_output=True, text=True, timeout=10)
        if head.returncode == 0:
            git = head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return {"git": git, "tree_sha256": digest.hexdigest()[:16]}


def scalars_csv(run_dir: Path) -> None:
    """run_dir/scalars.csv (step,tag,value) from its tensorboard event files, for the figures' curves."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    rows = []
    for events in sorted((run_dir / "tensorboard").rglob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0, "images": 1, "tensors": 1})
        acc.Reload()
        rows += [(e.step, tag, float(e.value)) for tag in acc.Tags().get("scalars", []) for e in acc.Scalars(tag)]
    if rows:
        buffer = io.StringIO()
        csv.writer(buffer).writerows([("step", "tag", "value"), *sorted(rows)])
        (run_dir / "scalars.csv").write_text(buffer.getvalue())


def wanted(path: Path) -> bool:
    """The small files that results, figures and resuming need."""
    if path.name in ("config.yaml", "overrides.yaml"):
        return path.parent.name == ".hydra"
    return path.name in KEEP or (path.name.startswith("theta_") and path.suffix == ".pt")


def pack(folder: Path, base: Path, out: Path) -> Path:
    """out (tar.gz, names relative to `base`, written atomically): the result folder's small files and the tail of
    its call log; refused above 16 MiB."""
    for tb in folder.rglob("tensorboard"):
        if tb.is_dir() and (tb.parent / ".hydra").is_dir() and "runs" not in tb.relative_to(folder).parts:
            scalars_csv(tb.parent)  # train.py runs outside sweeps: grokking, pretraining, first subspaces
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    with tarfile.open(tmp, "w:gz") as tar:
        for path in sorted(p for p in folder.rglob("*") if p.is_file() and wanted(p)):
            tar.add(path, arcname=str(path.relative_to(base)))
        log = folder / "call.log"
        if log.is_file():
            data = "\n".join(log.read_text(errors="replace").splitlines()[-LOG_TAIL:]).encode() + b"\n"
            info = tarfile.TarInfo(str((folder / "call.log.tail").relative_to(base)))
            info.size, info.mtime = len(data), int(time.time())
            tar.addfile(info, io.BytesIO(data))
    if tmp.stat().st_size > LIMIT_BYTES:
        size = tmp.stat().st_size / 2**20
        tmp.unlink()
        raise RuntimeError(f"{out} would be {size:.1f} MiB > 16 MiB; pack the sweeps of {folder} separately")
    os.replace(tmp, out)
    return out


def plan(lanes: list[list[str]], env: dict[str, str], scripts: Path) -> list[dict]:
    """What the lanes would run with these knobs, without running it: per command its runs and steps per run
    (epochs × batches per epoch, or the step cap), from the scripts' DRY=1 commands and the composed configs."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from idlab.sweep.arguments import split_sweep_overrides
    from repro.results import train_size

    rows = []
    for name in (n for lane in lanes for n in lane):
        dry = subprocess.run(["bash", str(scripts / f"{name}.sh")], cwd=REPO, capture_output=True, text=True,
                             env={**env, "DRY": "1"}, check=True)
        for line in (ln[2:] for ln in dry.stdout.splitlines() if ln.startswith("+ python ")):
            argv = shlex.split(line)
            if argv[1] not in ("sweep.py", "train.py"):
                continue
            sweep_args, args = split_sweep_overrides(argv[2:])
            GlobalHydra.instance().clear()
            with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
                cfg = compose("train", overrides=[a for a in args if not a.startswith("hydra")])
            runs = 1
            if argv[1] == "sweep.py":
                from idlab.sweep.arguments import apply_sweep_overrides
                from idlab.sweep.spec import SweepSpec

                spec = SweepSpec.from_dict(apply_sweep_overrides(cfg.get("sweep"), sweep_args))
                runs = len(spec.values) * len(spec.seeds) + (len(spec.seeds) if spec.baseline_is_measured else 0)
            size, batch = train_size(cfg), int(cfg.data.batch_size)
            epochs, cap = int(cfg.trainer.get("max_epochs") or -1), int(cfg.trainer.get("max_steps") or -1)
            steps = epochs * -(-size // batch) if epochs > 0 and size else None
            steps = cap if steps is None or 0 < cap < steps else steps
            model = str(cfg.model._target_).rsplit(".", 1)[-1] + (f" {cfg.model.width}×{cfg.model.depth}"
                                                                  if "width" in cfg.model else "")
            where = next((a.split("=", 1)[1] for a in argv if a.startswith(("sweep.dir=", "hydra.run.dir="))), "?")
            rows.append({"result": name, "folder": where.split(f"/{name}/", 1)[-1], "model": model, "runs": runs,
                         "steps": steps})
    return rows


def missing_launcher(env: dict[str, str]) -> str | None:
    """Why the scripts' sweeps cannot start here, before any lane runs: JOBS > 1 launches them through Hydra's
    joblib launcher, a separate package that a bare GPU image may lack (then every sweep would fail on its own)."""
    if int(env.get("JOBS", "1")) <= 1 or env.get("DRY") == "1":
        return None
    probe = [env.get("PYTHON", sys.executable), "-c", "import hydra_plugins.hydra_joblib_launcher"]
    if subprocess.run(probe, env=env, capture_output=True).returncode == 0:
        return None
    return (f"JOBS={env['JOBS']} runs each sweep's runs through Hydra's joblib launcher, which {probe[0]} cannot "
            "import; install hydra-joblib-launcher (pip install hydra-joblib-launcher==1.2.0; on a GPU image "
            "carry its wheel) or set JOBS=1")


def parse(argv: list[str] | None) -> argparse.Namespace:
    """Command-line arguments; an unknown result or a bad budget is one clear line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lanes", nargs="*", metavar="LANE", help="comma-separated results, e.g. full/li_mnist,full/lora_vs_subspace")
    parser.add_argument("--budget", type=float, default=None, help="seconds for the scripts; then stop, report, pack")
    parser.add_argument("--root", type=Path, default=Path(os.environ.get("ROOT", "outputs/repro")),
                        help="result folders (default $ROOT or outputs/repro; keep it relative to the repository "
                             "root: paths in the commands enter the runs' keys, which a resumed call must reproduce)")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or "outputs/repro/_out"),
                        help="where the tarballs go (default $OUT)")
    parser.add_argument("--scripts", type=Path, default=REPO / "repro", help=argparse.SUPPRESS)
    parser.add_argument("--plan", action="store_true", help="print runs × steps of every command and exit")
    parser.add_argument("--code-version", action="store_true", help="print the code version of this copy and exit")
    args = parser.parse_args(argv)
    args.lanes = [[n for n in lane.split(",") if n] for lane in args.lanes]
    known = sorted(str(p.relative_to(args.scripts).with_suffix("")) for p in args.scripts.glob("*/*.sh"))
    for name in (n for lane in args.lanes for n in lane):
        if name not in known:
            parser.error(f"unknown result {name!r}; choose from: {', '.join(known)}")
    if not args.lanes and not args.code_version:
        parser.error(f"name at least one result: {', '.join(known)}")
    if args.budget is not None and args.budget <= 0:
        parser.error(f"--budget {args.budget:g} must be a positive number of seconds")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run, stop at the budget, re-report, record, pack; exit status 1 when a result did not finish cleanly."""
    args = parse(argv)
    if args.code_version:
        print(json.dumps(code_version()))
        return 0
    os.chdir(REPO)
    start = time.monotonic()
    deadline = start + (args.budget if args.budget is not None else float("inf"))
    env = {**os.environ, "ROOT": str(args.root), "PYTHON": os.environ.get("PYTHON", sys.executable)}
    env.setdefault("JOBS", str(max(1, (os.cpu_count() or 1) // len(args.lanes))))
    if args.plan:
        rows = plan(args.lanes, env, args.scripts)
        print("| result | folder | model | runs | steps per run | runs × steps |\n|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['result']} | {r['folder']} | {r['model']} | {r['runs']} | {r['steps']:,} | "
                  f"{r['runs'] * r['steps']:,} |")
        total = sum(r["runs"] * r["steps"] for r in rows)
        print(f"| all | | | {sum(r['runs'] for r in rows)} | | {total:,} |")
        return 0
    missing = missing_launcher(env)
    if missing:
        print(f"call.py: {missing}", file=sys.stderr)
        return 2
    invocation = "python repro/call.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    ok = True
    for outcome in run_lanes(args.lanes, deadline, env, args.root, args.scripts):
        folder = args.root / outcome["result"]
        notes = reaggregate(folder) if folder.is_dir() else {}
        record(folder, outcome, invocation, args.budget, env, notes)
        tarball = pack(folder, folder.parent, args.out / f"{outcome['result']}.tar.gz")
        ok &= outcome["status"] == "done"
        print(f"{outcome['result']:28s} {outcome['status']:22s} {outcome['wall_s']:7.1f} s  "
              f"{tarball} ({tarball.stat().st_size / 2**20:.2f} MiB)  {'; '.join(f'{k}: {v}' for k, v in notes.items())}")
    print(f"call: {time.monotonic() - start:.1f} s in all")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
