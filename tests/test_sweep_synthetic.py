"""The sweep driver end to end on a cheap synthetic task with a planted threshold (basic launcher, no training)."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from idlab.sweep.cli import describe, main
from idlab.sweep.driver import run_sweep
from idlab.sweep.records import RUNS_DIR, SweepLock
from idlab.sweep.report import report
from idlab.sweep.spec import SweepConfigError

SRC = Path(__file__).resolve().parents[1] / "src"
TASK_YAML = """\
defaults:
  - adapt: subspace
  - _self_
seed: 0
name: synthetic
paths:
  output_dir: ${hydra:runtime.output_dir}
sweep:
  param: adapt.d
  values: [100, 1000, 10000]
  seeds: [0, 1]
  metric: test/acc
  baseline: full
  threshold: 0.9
"""


def planted_accuracy(cfg: DictConfig) -> float:
    """Full training scores 1.0; a d-dimensional subspace scores min(1, d/1000) minus 0.01 × seed, or chance 0.1
    above d = $SYNTHETIC_COLLAPSE_ABOVE (training that fails at large d without diverging)."""
    if cfg.adapt.kind == "full":
        return 1.0
    if cfg.adapt.d > float(os.environ.get("SYNTHETIC_COLLAPSE_ABOVE", "inf")):
        return 0.1
    return min(1.0, cfg.adapt.d / 1000) - 0.01 * cfg.seed


def synthetic_task(cfg: DictConfig) -> dict[str, float]:
    """Writes metrics.json like idlab.run.train; seed 1 fails on purpose at d = $SYNTHETIC_FAIL_AT, kills its
    process at d = $SYNTHETIC_EXIT_AT and diverges before any checkpoint (no test/acc, chance 0.1) at
    d = $SYNTHETIC_DIVERGE_AT or in $SYNTHETIC_DIVERGE_RANGE."""
    if str(cfg.adapt.get("d")) == os.environ.get("SYNTHETIC_FAIL_AT") and cfg.seed == 1:
        raise RuntimeError(f"planted failure at d={cfg.adapt.d}")
    if str(cfg.adapt.get("d")) == os.environ.get("SYNTHETIC_EXIT_AT") and cfg.seed == 1:
        os._exit(3)  # the process dies mid-run: no record update, no result sent back
    metrics = {"test/acc": planted_accuracy(cfg), "chance/acc": 0.1}
    low, _, high = os.environ.get("SYNTHETIC_DIVERGE_RANGE", "0:0").partition(":")
    d = cfg.adapt.get("d")
    if cfg.seed == 1 and (str(d) == os.environ.get("SYNTHETIC_DIVERGE_AT") or float(low) <= (d or 0) < float(high)):
        metrics = {"diverged": True, "diverged_step": 3.0, "chance/acc": 0.1}
    out = Path(HydraConfig.get().runtime.output_dir)
    if "CUDA_MPS_PIPE_DIRECTORY" in os.environ:  # which MPS daemon this job would connect to
        (out / "mps_pipe.txt").write_text(os.environ["CUDA_MPS_PIPE_DIRECTORY"])
    (out / "metrics.json").write_text(json.dumps(metrics))
    return metrics


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    """A minimal Hydra config tree: task.yaml with a sweep block, adapt/{subspace,full}.yaml."""
    root = tmp_path / "configs"
    (root / "adapt").mkdir(parents=True)
    (root / "task.yaml").write_text(TASK_YAML)
    (root / "adapt" / "subspace.yaml").write_text("kind: subspace\nd: 10\n")
    (root / "adapt" / "full.yaml").write_text("kind: full\n")
    return root


def sweep(config_dir: Path, sweep_dir: Path, *args: str) -> dict:
    """Run the driver in-process with the synthetic task."""
    return run_sweep(config_dir, [f"sweep.dir={sweep_dir}", *args], config_name="task", task=synthetic_task,
                     validate=None)


def run_folders(sweep_dir: Path) -> set[str]:
    return {p.name for p in (sweep_dir / RUNS_DIR).iterdir() if p.name.isdigit()}


def test_grid_sweep_reports_d_int90_and_writes_every_output(config_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    summary = sweep(config_dir, out)
    assert summary["runs"] == {"done": 8, "failed": 0, "pending": 0, "planned": 8, "diverged": 0}
    assert summary["baseline"] == {**summary["baseline"], "kind": "full", "value": 1.0, "n": 2}
    assert summary["d_int90"]["value"] == 1000 and summary["d_int90"]["ci95"] == [1000, 1000]
    assert summary["d_int100"]["value"] is None and "never reached" in summary["d_int100"]["note"]
    means = {p["value"]: p["mean"] for p in summary["points"]}
    assert means == pytest.approx({100: 0.095, 1000: 0.995, 10000: 0.995})
    for name in ("summary.json", "results.csv", "plot.png", "plan.json"):
        assert (out / name).stat().st_size > 0, name
    assert list((out / "tensorboard" / "sweep").glob("events.out.tfevents.*"))
    rows = (out / "results.csv").read_text().splitlines()
    assert len(rows) == 9 and rows[0].startswith("role,value,seed,status,metric,diverged")
    assert summary["d_int90"]["seeds"] == 2 and summary["d_int90"]["distinct_resamples"] == 3
    assert "at most 3 distinct resamples" in summary["d_int90"]["ci_note"], "2 seeds: the CI is said to be coarse"


def test_rerun_skips_finished_runs_and_reruns_a_deleted_result_in_a_new_folder(config_dir: Path,
                                                                                tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    sweep(config_dir, out)
    before = run_folders(out)
    sweep(config_dir, out)
    assert run_folders(out) == before, "a complete sweep must launch nothing when rerun"
    victim = next(p for p in (out / RUNS_DIR).iterdir()
                  if p.name.isdigit() and "adapt.d=100\n" in (p / ".hydra" / "overrides.yaml").read_text())
    (victim / "metrics.json").unlink()
    summary = sweep(config_dir, out)
    new = run_folders(out) - before
    assert len(new) == 1 and victim.exists(), "the lost result is rerun in a new folder, the old one kept"
    assert summary["runs"]["done"] == 8 and summary["d_int90"]["value"] == 1000


def test_a_failed_run_is_never_averaged_and_leaves_d_int90_undetermined_until_rerun(
        config_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "sweep"
    monkeypatch.setenv("SYNTHETIC_FAIL_AT", "1000")
    summary = sweep(config_dir, out)
    assert summary["runs"]["failed"] == 1 and summary["runs"]["done"] == 7
    failed = summary["failed"][0]
    assert (failed["value"], failed["seed"]) == (1000, 1) and "planted failure" in failed["error"]
    point = summary["points"][1]
    assert point["n"] == 1 and point["missing"] == [1] and not point["complete"]
    assert summary["incomplete"] == [{"value": 1000, "missing": [1], "failed": [1]}]
    # Seed 0 alone reaches 0.9 at d=1000, but the missing seed could pull the mean to 0.5 (worst case): d_int90
    # is 1000 or 10000 depending on a run that crashed for reasons that say nothing about the subspace.
    dim = summary["d_int90"]
    assert dim["status"] == "undetermined" and dim["value"] is None and dim["possible"] == [1000, 10000]
    assert dim["from_finished_seeds"] == 1000
    assert "UNDETERMINED" in describe(summary)
    assert main(["--report", str(out)], config_dir) == 1, "exit status 1 while runs are failed"
    before = run_folders(out)
    monkeypatch.delenv("SYNTHETIC_FAIL_AT")
    fixed = sweep(config_dir, out)
    assert fixed["runs"] == {"done": 8, "failed": 0, "pending": 0, "planned": 8, "diverged": 0}
    assert len(run_folders(out) - before) == 1, "only the failed run is launched again"
    assert fixed["points"][1]["n"] == 2 and fixed["d_int90"]["status"] == "reached"
    assert fixed["d_int90"]["value"] == 1000


def test_a_diverged_run_is_counted_at_chance_flagged_everywhere_and_not_rerun(
        config_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "sweep"
    monkeypatch.setenv("SYNTHETIC_DIVERGE_AT", "1000")
    summary = sweep(config_dir, out)
    assert summary["runs"] == {"done": 8, "failed": 0, "pending": 0, "planned": 8, "diverged": 1}
    point = summary["points"][1]
    assert point["n"] == 2 and point["diverged"] == [1] and point["seeds"]["1"] == 0.1
    assert point["mean"] == pytest.approx((1.0 + 0.1) / 2), "counted, not dropped"
    # Dropping the diverged seed would have reported 1000; counting it moves d_int90 up to 10000.
    assert summary["d_int90"]["value"] == 10000 and summary["d_int90"]["status"] == "reached"
    assert summary["diverged"][0] == {**summary["diverged"][0], "value": 1000, "seed": 1, "step": 3.0,
                                      "counted": 0.1, "counted_as": "chance"}
    rows = {(r["value"], r["seed"]): r for r in csv.DictReader((out / "results.csv").open())}
    assert rows[("1000", "1")]["diverged"] == "1" and rows[("1000", "1")]["counted_as"] == "chance"
    assert rows[("1000", "0")]["diverged"] == "0"
    assert "DIVERGED value=1000 seed=1" in describe(summary)
    before = run_folders(out)
    assert sweep(config_dir, out)["runs"]["diverged"] == 1 and run_folders(out) == before, "a result: not rerun"


def test_summary_records_which_randomness_the_seeds_varied_from_the_run_configs(config_dir: Path,
                                                                               tmp_path: Path) -> None:
    (config_dir / "adapt" / "subspace.yaml").write_text("kind: subspace\nd: 10\nseed: ${seed}\n")
    (config_dir / "task.yaml").write_text(TASK_YAML.replace("seed: 0\n", "seed: 0\ndata: {seed: '${seed}', "
                                                                            "split_seed: 0}\n"))
    varied = sweep(config_dir, tmp_path / "varied")["randomness"]
    assert set(varied["varied"]) == {"seed", "adapt.seed", "data.seed"} and varied["fixed"] == {"data.split_seed": 0}
    assert "projection P" in varied["varied"]["adapt.seed"]
    fixed = sweep(config_dir, tmp_path / "fixed", "++adapt.seed=0", "sweep.baseline_overrides=['~adapt.seed']")[
        "randomness"]
    assert set(fixed["varied"]) == {"seed", "data.seed"} and fixed["fixed"]["adapt.seed"] == 0


def test_summary_lists_code_versions_and_warns_when_runs_come_from_different_ones(config_dir: Path,
                                                                                 tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    first = sweep(config_dir, out)
    assert len(first["code_versions"]) == 1 and not any("code versions" in w for w in first["warnings"])
    metrics = next((out / RUNS_DIR).glob("*/metrics.json"))
    data = json.loads(metrics.read_text())
    metrics.write_text(json.dumps({**data, "code": {"results_version": 2, "commit": "0123456789abc",
                                                    "dirty": False, "source_hash": "feed"}}))
    summary = report(out)
    assert len(summary["code_versions"]) == 2
    assert any("2 code versions" in w for w in summary["warnings"])


def test_a_killed_driver_leaves_a_running_record_that_is_rerun(config_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    script = tmp_path / "hang.py"
    script.write_text(textwrap.dedent(f"""
        import json, sys, time
        from pathlib import Path
        sys.path[:0] = [{str(SRC)!r}, {str(Path(__file__).parent)!r}]
        from hydra.core.hydra_config import HydraConfig
        from idlab.sweep.driver import run_sweep
        import test_sweep_synthetic as t

        def hang_at_100(cfg):
            if cfg.adapt.get("d") == 100:
                time.sleep(600)
            return t.synthetic_task(cfg)

        run_sweep(Path({str(config_dir)!r}), ["sweep.dir={out}"], config_name="task", task=hang_at_100,
                  validate=None)
    """))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and not _running_record(out):
            time.sleep(0.2)
        assert _running_record(out), "the hanging run never started"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    killed = _running_record(out)
    interim = report(out)  # plan.json is written before launching, so a killed sweep can be re-aggregated
    assert interim["search"]["status"] == "running" and interim["runs"]["planned"] == 8
    summary = sweep(config_dir, out)
    assert summary["runs"]["done"] == 8 and summary["runs"]["failed"] == 0
    assert killed.exists() and json.loads((killed / "sweep_run.json").read_text())["status"] == "running"
    assert report(out)["d_int90"]["value"] == 1000


def _running_record(out: Path) -> Path | None:
    for record in (out / RUNS_DIR).glob("*/sweep_run.json") if (out / RUNS_DIR).exists() else []:
        try:
            if json.loads(record.read_text())["status"] == "running":
                return record.parent
        except (json.JSONDecodeError, KeyError):
            continue
    return None


def test_bisect_finds_the_planted_threshold_with_fewer_runs_than_a_grid(config_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "bisect"
    summary = sweep(config_dir, out, "sweep.search=bisect", "sweep.tolerance=0.03", "sweep.seeds=[0,1]",
                    "sweep.values=[10,100000]")
    # Seed-mean accuracy min(1, d/1000) - 0.005 reaches 0.9 × 1.0 from d = 905 on.
    d90 = summary["d_int90"]["value"]
    assert 905 <= d90 <= 905 * 1.03 + 1
    assert summary["search"]["kind"] == "bisect" and "tolerance" in summary["search"]["stop_reason"]
    below = max(p["value"] for p in summary["points"] if p["value"] < d90)
    assert d90 / below <= 1.03 + 1e-9
    point_runs = summary["runs"]["planned"] - 2
    assert point_runs <= 2 * (4 + 3 * 5), f"bisect used {point_runs} runs"


def test_bisect_counts_diverged_runs_like_the_grid(config_dir: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # Seed 1 diverges for 800 <= d < 2000 and counts at chance 0.1, so seed-means stay below 0.9 there; dropping
    # those runs would have let seed 0 alone pass from d = 900 on.
    monkeypatch.setenv("SYNTHETIC_DIVERGE_RANGE", "800:2000")
    summary = sweep(config_dir, tmp_path / "bisect", "sweep.search=bisect", "sweep.tolerance=0.03",
                    "sweep.values=[10,100000]")
    d90 = summary["d_int90"]["value"]
    assert 2000 <= d90 <= 2000 * 1.03 + 1
    assert summary["diverged"] and all(800 <= r["value"] < 2000 and r["seed"] == 1 for r in summary["diverged"])


def test_report_reaggregates_a_folder_and_rejects_a_folder_that_is_not_a_sweep(config_dir: Path,
                                                                                tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    first = sweep(config_dir, out)
    (out / "summary.json").unlink()
    (out / "plot.png").unlink()
    assert main(["--report", str(out)], config_dir) == 0
    again = json.loads((out / "summary.json").read_text())
    assert again["d_int90"] == first["d_int90"] and (out / "plot.png").exists()
    with pytest.raises(SweepConfigError, match="not a sweep folder"):
        report(tmp_path)
    assert main(["--report", str(tmp_path)], config_dir) == 2


def test_missing_sweep_block_unknown_launcher_and_a_busy_folder_are_clear_errors(config_dir: Path,
                                                                                 tmp_path: Path) -> None:
    (config_dir / "plain.yaml").write_text("seed: 0\nadapt: {d: 1}\n")
    with pytest.raises(SweepConfigError, match="no sweep block"):
        run_sweep(config_dir, [f"sweep.dir={tmp_path}/x"], config_name="plain", task=synthetic_task, validate=None)
    (config_dir / "needs.yaml").write_text(TASK_YAML + "checkpoint: ???\n")
    with pytest.raises(SweepConfigError, match=r"checkpoint must be set .*checkpoint=VALUE"):
        run_sweep(config_dir, [f"sweep.dir={tmp_path}/n"], config_name="needs", task=synthetic_task, validate=None)
    with pytest.raises(SweepConfigError, match="unknown launcher hydra/launcher=nosuch.*joblib"):
        sweep(config_dir, tmp_path / "y", "hydra/launcher=nosuch")
    with pytest.raises(SweepConfigError, match="sweep.values"):
        sweep(config_dir, tmp_path / "z", "sweep.values=[]")
    with SweepLock(tmp_path / "busy"):
        with pytest.raises(SweepConfigError, match="another sweep.py is running"):
            sweep(config_dir, tmp_path / "busy")


def test_out_of_range_values_fail_before_anything_is_launched(config_dir: Path, tmp_path: Path) -> None:
    def reject_large_d(cfg: DictConfig) -> None:
        if cfg.adapt.d > 5000:
            raise ValueError(f"adapt.d={cfg.adapt.d} exceeds D=5000")

    out = tmp_path / "sweep"
    with pytest.raises(SweepConfigError, match="adapt.d=10000 does not work for this model.*D=5000"):
        run_sweep(config_dir, [f"sweep.dir={out}"], config_name="task", task=synthetic_task, validate=reject_large_d)
    assert not (out / RUNS_DIR).exists() or not run_folders(out)


def test_packed_runs_share_one_job_yet_keep_their_folders_records_and_failures(
        config_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNTHETIC_FAIL_AT", "1000")
    alone = sweep(config_dir, tmp_path / "alone")
    packed_dir = tmp_path / "packed"
    packed = sweep(config_dir, packed_dir, "sweep.runs_per_job=3")
    assert packed["points"] == alone["points"] and packed["runs"] == alone["runs"] == \
        {"done": 7, "failed": 1, "pending": 0, "planned": 8, "diverged": 0}
    assert [(f["value"], f["seed"]) for f in packed["failed"]] == [(1000, 1)], "a failed member sinks only itself"
    folders = sorted((packed_dir / RUNS_DIR).glob("[0-9]*"), key=lambda p: int(p.name))
    assert len(folders) == 8 and {p.name for p in folders} == {str(i) for i in range(8)}
    heads = [p for p in folders if (p / "sweep_members.json").exists()]
    assert len(heads) == 3, "8 runs in jobs of 3: three launched jobs carry the other five"
    for folder in folders:
        assert (folder / ".hydra" / "config.yaml").exists() and (folder / "sweep_run.json").exists()
        assert "hydra.sweep.subdir" not in (folder / ".hydra" / "overrides.yaml").read_text()
    pids = {json.loads((f / "sweep_run.json").read_text())["pid"] for f in folders}
    assert pids == {os.getpid()}, "the basic launcher runs every job, and so every member, in this process"
    monkeypatch.delenv("SYNTHETIC_FAIL_AT")
    fixed = sweep(config_dir, packed_dir, "sweep.runs_per_job=3")
    assert fixed["runs"]["done"] == 8 and len(run_folders(packed_dir)) == 9, "only the failed run again"


def test_side_by_side_needs_room_in_the_job(config_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(SweepConfigError, match="side_by_side=3.*runs_per_job=2"):
        sweep(config_dir, tmp_path / "s", "sweep.runs_per_job=2", "sweep.side_by_side=3")


def test_a_metric_that_falls_at_larger_d_is_warned_about(config_dir: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    plain = sweep(config_dir, tmp_path / "plain")
    assert not any("falls from" in w for w in plain["warnings"]), "a metric that only rises draws no warning"
    monkeypatch.setenv("SYNTHETIC_COLLAPSE_ABOVE", "1000")
    summary = sweep(config_dir, tmp_path / "collapse")
    assert summary["d_int90"]["value"] == 1000, "the d_int itself is read as before"
    assert any(w.startswith("test/acc falls from 0.995 at adapt.d=1000 to 0.100 at 10000") and "above 1000" in w
               for w in summary["warnings"]), summary["warnings"]



def test_fork_launcher_matches_the_basic_launcher_and_a_dead_job_sinks_only_itself(
        config_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fork = ("hydra/launcher=fork", "hydra.launcher.n_jobs=3")
    basic = sweep(config_dir, tmp_path / "basic")
    forked = sweep(config_dir, tmp_path / "fork", *fork)
    assert forked["points"] == basic["points"] and forked["runs"] == basic["runs"]
    pids = {json.loads(p.read_text())["pid"] for p in (tmp_path / "fork" / RUNS_DIR).glob("*/sweep_run.json")}
    assert len(pids) == 8 and os.getpid() not in pids, "each job runs in its own forked process"
    monkeypatch.setenv("SYNTHETIC_EXIT_AT", "1000")
    out = tmp_path / "dies"
    summary = sweep(config_dir, out, *fork)
    assert summary["runs"]["done"] == 7, "the seven other jobs finish although one process died mid-run"
    records = [json.loads(p.read_text()) for p in (out / RUNS_DIR).glob("*/sweep_run.json")]
    assert sorted(r["status"] for r in records) == ["done"] * 7 + ["running"]
    monkeypatch.delenv("SYNTHETIC_EXIT_AT")
    again = sweep(config_dir, out, *fork)
    assert again["runs"]["done"] == 8 and again["points"] == basic["points"], "the next invocation reruns it"


def test_fork_launcher_settings_are_checked_before_any_job(config_dir: Path, tmp_path: Path) -> None:
    for value, message in (("n_jobs=0", "n_jobs=0 is not a number of processes: give an integer ≥ 1, or -1"),
                           ("n_jobs=-2", "n_jobs=-2 is not"), ("n_jobs=two", "cannot compose.*n_jobs=two"),
                           ("mps=maybe", "cannot compose.*mps=maybe")):
        out = tmp_path / value.replace("=", "_")
        with pytest.raises(SweepConfigError, match=message):
            sweep(config_dir, out, "hydra/launcher=fork", f"hydra.launcher.{value}")
        assert not list(out.glob(f"{RUNS_DIR}/*/sweep_run.json"))


FAKE_MPS_CONTROL = """\
#!/bin/sh
# stands in for nvidia-cuda-mps-control: logs `start PIPE_DIR` for -d and `<command> PIPE_DIR` for stdin commands
if [ "$1" = "-d" ]; then
  echo "start $CUDA_MPS_PIPE_DIRECTORY" >> "$FAKE_MPS_LOG"
  if [ -n "$FAKE_MPS_FAIL" ]; then echo "cannot start: no GPU" >&2; exit 1; fi
  exit 0
fi
read command
echo "$command $CUDA_MPS_PIPE_DIRECTORY" >> "$FAKE_MPS_LOG"
"""


def test_fork_launcher_with_mps_makes_every_job_a_client_of_one_private_daemon_and_quits_it(
        config_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir, calls = tmp_path / "bin", tmp_path / "mps_calls.txt"
    bin_dir.mkdir()
    (bin_dir / "nvidia-cuda-mps-control").write_text(FAKE_MPS_CONTROL)
    (bin_dir / "nvidia-cuda-mps-control").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_MPS_LOG", str(calls))
    monkeypatch.delenv("CUDA_MPS_PIPE_DIRECTORY", raising=False)
    mps = ("hydra/launcher=fork", "hydra.launcher.n_jobs=3", "hydra.launcher.mps=true")
    out = tmp_path / "mps"
    summary = sweep(config_dir, out, *mps)
    assert summary["runs"]["done"] == 8
    deadline = time.time() + 30  # the daemon is told to quit (then its folder goes) once the jobs' processes exit
    while time.time() < deadline:
        lines = calls.read_text().splitlines()
        if len(lines) == 2 and not Path(lines[0].split()[1]).exists():
            break
        time.sleep(0.05)
    assert [line.split()[0] for line in lines] == ["start", "quit"], "one daemon for the launch, quit at its end"
    pipe = lines[0].split()[1]
    seen = [p.read_text() for p in (out / RUNS_DIR).glob("*/mps_pipe.txt")]
    assert len(seen) == 8 and set(seen) == {pipe} == {lines[1].split()[1]}, "every job is a client of that daemon"
    assert "CUDA_MPS_PIPE_DIRECTORY" not in os.environ and not Path(pipe).exists(), "environment restored, folder gone"
    monkeypatch.setenv("FAKE_MPS_FAIL", "1")
    with pytest.raises(SweepConfigError, match=r"mps-control -d` failed \(exit 1: cannot start: no GPU\).*mps=false"):
        sweep(config_dir, tmp_path / "fails", *mps)
    assert not list((tmp_path / "fails").glob(f"{RUNS_DIR}/*/sweep_run.json")), "no job starts without the daemon"
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(SweepConfigError, match="mps=true needs nvidia-cuda-mps-control .* on PATH.*mps=false"):
        sweep(config_dir, tmp_path / "missing", *mps)
