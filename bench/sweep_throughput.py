"""End-to-end sweep throughput: Li et al.'s MNIST FC d-grid (10 values × 3 seeds + 3 baselines) on mnist_mini.

python bench/sweep_throughput.py [--jobs 12] [--runs-per-job 1] [--side-by-side 1] [--launcher joblib|fork] [--mps]
                                 [--epochs 100] [--out DIR] [--extra OVERRIDE ...] [--tag TAG]
Runs `python sweep.py` (joblib or fork: `--jobs` worker processes share the GPU; each launched job runs
`--runs-per-job` runs, `--side-by-side` of them at once in threads; data held on the device) and breaks the wall
time down into planning, worker start-up, per-run set-up (split into its phases, and into a process's first run vs
later runs), training and reporting; samples GPU utilisation. Prints a markdown row for docs/benchmarks.md and writes
bench_<label>.json next to the sweep folder.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LI_MNIST_FC_D = [10, 50, 100, 300, 500, 750, 1000, 2000, 3000, 4000]  # Li et al.'s loop_d grid (+750)


def sweep_command(sweep_dir: Path, jobs: int, epochs: int, values: list[int], seeds: list[int],
                  extra: list[str], runs_per_job: int = 1, side_by_side: int = 1,
                  launcher: str = "joblib") -> list[str]:
    """sweep.py over adapt.d for FC 784-200-200-10 (D = 199,210) with Adam, as in Li et al."""
    launch = [f"hydra/launcher={launcher}", f"hydra.launcher.n_jobs={jobs}"] if launcher != "basic" else []
    return [sys.executable, str(REPO / "sweep.py"), "data=mnist_mini", "model=fc", "adapt=subspace",
            "optim=adam", "trainer=gpu", f"trainer.max_epochs={epochs}", "++callbacks.progress_bar=null",
            "+trainer.enable_progress_bar=false", "sweep.param=adapt.d", f"sweep.values=[{','.join(map(str, values))}]",
            f"sweep.seeds=[{','.join(map(str, seeds))}]", "sweep.baseline=full", f"sweep.dir={sweep_dir}",
            f"sweep.runs_per_job={runs_per_job}", f"sweep.side_by_side={side_by_side}", *launch,
            "+callbacks.fit_timer._target_=sweep_throughput.make_fit_timer", *extra]


class FitTimer:
    """Lightning callback (passed as +callbacks.fit_timer): writes timing.json with where one run's time went."""

    def __init__(self) -> None:
        self.t: dict[str, float] = {"created": time.time()}
        self.graph_steps = ()  # acts on the first batch, whichever steps it holds: chunking stays on
        self.val_s = 0.0
        self._val0 = 0.0

    def setup(self, trainer, pl_module, stage: str) -> None:  # noqa: ANN001 - Lightning hook signature
        self.t.setdefault(f"setup_{getattr(stage, 'value', stage)}", time.time())

    def on_train_start(self, trainer, pl_module) -> None:  # noqa: ANN001
        self.t["train_start"] = time.time()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        if "first_batch" not in self.t:  # the first Lightning batch done on the GPU (warm-up, capture, JIT)
            import torch

            if torch.cuda.is_available():
                torch.cuda.current_stream().synchronize()
            self.t["first_batch"] = time.time()
            self.t["first_batch_steps"] = trainer.global_step

    def on_validation_start(self, trainer, pl_module) -> None:  # noqa: ANN001
        self._val0 = time.time()

    def on_validation_end(self, trainer, pl_module) -> None:  # noqa: ANN001
        self.val_s += time.time() - self._val0

    def on_train_end(self, trainer, pl_module) -> None:  # noqa: ANN001
        self.t["train_end"] = time.time()
        Path(trainer.default_root_dir, "timing.json").write_text(json.dumps({**self.t, "val_s": self.val_s}))


def _as_callback(cls: type) -> type:
    """FitTimer as a pytorch_lightning Callback subclass (imported lazily: the driver does not need Lightning)."""
    import pytorch_lightning as pl

    return type(cls.__name__, (cls, pl.Callback), {})


def make_fit_timer() -> object:
    """Factory used by the `_target_` of +callbacks.fit_timer."""
    return _as_callback(FitTimer)()


class GpuSampler(threading.Thread):
    """Samples nvidia-smi utilisation and memory once a second while the sweep runs."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.samples: list[tuple[float, float]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(1.0):
            try:
                line = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu,memory.used",
                                       "--format=csv,noheader,nounits"], capture_output=True, text=True,
                                      timeout=5).stdout.splitlines()[0]
                util, mem = (float(x) for x in line.split(","))
                self.samples.append((util, mem))
            except (OSError, IndexError, ValueError, subprocess.TimeoutExpired):
                return


def driver_phases(log: str, t_start: float) -> dict:
    """What the driver's log says it did before launching: the model check and the composition, with the
    seconds from the start of sweep.py until each line was written."""
    phases = {}
    for stamp, text in re.findall(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+)\]\[idlab\.sweep\.driver\]\S* ?-? ?(.*)$", log,
                                  re.MULTILINE):
        at = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp() - t_start
        for key, pattern in (("model_check", r"checked the smallest and largest value in ([\d.]+) s"),
                             ("compose", r"composed \d+ run configs in ([\d.]+) s")):
            found = re.search(pattern, text)
            if found:
                phases[key] = {"s": float(found.group(1)), "done_at_s": at, "line": text}
    return phases


def breakdown(sweep_dir: Path, t_start: float, t_end: float, jobs: int) -> dict:
    """Where the wall time went, from each run's sweep_run.json and metrics.json."""
    runs = []
    for record_path in sorted((sweep_dir / "runs").glob("*/sweep_run.json")):
        record = json.loads(record_path.read_text())
        metrics_path = record_path.with_name("metrics.json")
        metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
        timing_path = record_path.with_name("timing.json")
        timing = json.loads(timing_path.read_text()) if timing_path.exists() else {}
        if "finished" in record and "train_end" in timing:
            runs.append({"wall": record["finished"] - record["started"], "started": record["started"],
                         "finished": record["finished"], "steps": metrics.get("global_step", 0.0),
                         "status": record["status"], "setup": timing["train_start"] - record["started"],
                         "loop": timing["train_end"] - timing["train_start"], "val": timing["val_s"],
                         "after": record["finished"] - timing["train_end"], "pid": record.get("pid"),
                         "build": timing["created"] - record["started"],
                         "trainer": timing.get("setup_fit", timing["created"]) - timing["created"],
                         "fit_setup": timing["train_start"] - timing.get("setup_fit", timing["created"]),
                         "first_batch": timing.get("first_batch", timing["train_start"]) - timing["train_start"]})
    if not runs:
        return {"runs": 0}
    first_of_process = set()
    for pid in {r["pid"] for r in runs}:
        first_of_process.add(id(min((r for r in runs if r["pid"] == pid), key=lambda r: r["started"])))
    firsts = [r for r in runs if id(r) in first_of_process]
    later = [r for r in runs if id(r) not in first_of_process]

    def phases(group: list[dict]) -> dict:
        return {k: statistics.median(r[k] for r in group) for k in ("setup", "build", "trainer", "fit_setup",
                                                                      "first_batch")} if group else {}
    walls = [r["wall"] for r in runs]
    steps = sum(r["steps"] for r in runs)
    first_start, last_end = min(r["started"] for r in runs), max(r["finished"] for r in runs)
    return {
        "runs": len(runs), "failed": sum(r["status"] != "done" for r in runs),
        "until_first_run_s": first_start - t_start, "training_span_s": last_end - first_start,
        "reporting_s": t_end - last_end,
        "run_wall_median_s": statistics.median(walls), "run_wall_max_s": max(walls),
        "run_setup_median_s": statistics.median(r["setup"] for r in runs),
        "run_loop_median_s": statistics.median(r["loop"] for r in runs),
        "run_val_median_s": statistics.median(r["val"] for r in runs),
        "run_test_teardown_median_s": statistics.median(r["after"] for r in runs),
        "ms_per_step_median": 1000 * statistics.median((r["loop"] - r["val"]) / max(r["steps"], 1) for r in runs),
        "steps_total": steps, "aggregate_steps_per_s": steps / (last_end - first_start),
        "parallel_efficiency": sum(walls) / (jobs * (last_end - first_start)),
        "processes": len({r["pid"] for r in runs}),
        "setup_phases_median_s": {"all": phases(runs), "first_run_of_a_process": phases(firsts),
                                  "later_runs": phases(later)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=12,
                        help="n_jobs of the joblib or fork launcher: worker processes sharing the GPU")
    parser.add_argument("--runs-per-job", type=int, default=1, help="sweep.runs_per_job")
    parser.add_argument("--side-by-side", type=int, default=1, help="sweep.side_by_side (threads per job)")
    parser.add_argument("--launcher", choices=("joblib", "fork", "basic"), default="joblib",
                        help="fork: idlab's launcher, jobs forked from the driver (no worker re-imports)")
    parser.add_argument("--mps", action="store_true",
                        help="with --launcher fork: hydra.launcher.mps=true (a private CUDA MPS daemon for the jobs)")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--values", type=int, nargs="+", default=LI_MNIST_FC_D)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "bench_sweep", help="results (json, log)")
    parser.add_argument("--work", type=Path, default=None, help="where the sweep folder goes (default: --out)")
    parser.add_argument("--timeout", type=float, default=480.0, help="give up after this many seconds")
    parser.add_argument("--extra", nargs="*", default=[], help="more overrides for every run (e.g. trainer=cpu)")
    parser.add_argument("--tag", default="", help="appended to the label (results of --extra variants side by side)")
    args = parser.parse_args()

    label = f"{args.launcher}{args.jobs if args.launcher != 'basic' else ''}_r{args.runs_per_job}_s{args.side_by_side}"
    label += "_mps" if args.mps else ""
    label += f"_{args.tag}" if args.tag else ""
    sweep_dir = (args.work or args.out) / label
    shutil.rmtree(sweep_dir, ignore_errors=True)  # a benchmark measures a cold sweep, not a resume
    if args.mps and args.launcher != "fork":
        parser.error("--mps needs --launcher fork")
    extra = args.extra + ["hydra.launcher.mps=true"] * args.mps
    command = sweep_command(sweep_dir, args.jobs, args.epochs, args.values, args.seeds, extra,
                            args.runs_per_job, args.side_by_side, args.launcher)
    sampler = GpuSampler()
    sampler.start()
    t_start = time.time()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "bench"),
                                                                     os.environ.get("PYTHONPATH")]))}
    try:
        proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=args.timeout, env=env)
    except subprocess.TimeoutExpired as err:
        proc = subprocess.CompletedProcess(command, returncode=124, stdout=str(err.stdout or ""),
                                           stderr=str(err.stderr or ""))
    t_end = time.time()
    sampler.stop.set()
    parallel = args.jobs * args.side_by_side if args.launcher != "basic" else args.side_by_side
    result = {"command": " ".join(command[1:]), "returncode": proc.returncode, "wall_s": t_end - t_start,
              "label": label, "jobs": args.jobs, "runs_per_job": args.runs_per_job, "side_by_side": args.side_by_side,
              "epochs": args.epochs, **breakdown(sweep_dir, t_start, t_end, parallel)}
    result["driver"] = driver_phases(proc.stdout + proc.stderr, t_start)
    if sampler.samples:
        result["gpu_util_mean_pct"] = statistics.mean(u for u, _ in sampler.samples)
        result["gpu_mem_max_mib"] = max(m for _, m in sampler.samples)
    summary_path = sweep_dir / "summary.json"
    if summary_path.exists():
        summary = json.loads(summary_path.read_text())
        result["d_int90"] = summary["d_int90"]["value"]
        result["d_int90_ci95"] = summary["d_int90"]["ci95"]
        result["baseline"] = summary["baseline"]["value"]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"bench_{label}.json").write_text(json.dumps(result, indent=2))
    (args.out / f"sweep_{label}.log").write_text(proc.stdout[-20000:] + "\n" + proc.stderr[-20000:])
    print(json.dumps(result, indent=2))
    print(f"| {label} | {result['wall_s']:.1f} s | {result.get('runs', 0)} runs | "
          f"run median {result.get('run_wall_median_s', 0):.1f} s | "
          f"setup {result.get('run_setup_median_s', 0):.1f} s | {result.get('ms_per_step_median', 0):.2f} ms/step | "
          f"GPU util {result.get('gpu_util_mean_pct', float('nan')):.0f} % | d_int90 {result.get('d_int90')} |")


if __name__ == "__main__":
    main()
