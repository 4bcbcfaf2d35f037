"""The sweep driver end to end on a cheap synthetic task with a planted threshold (basic launcher, no training)."""
from __future__ import annotations

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

from idlab.sweep.cli import main
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
    """Full training scores 1.0; a d-dimensional subspace scores min(1, d/1000) minus 0.01 × seed."""
    if cfg.adapt.kind == "full":
        return 1.0
    return min(1.0, cfg.adapt.d / 1000) - 0.01 * cfg.seed


def synthetic_task(cfg: DictConfig) -> dict[str, float]:
    """Writes metrics.json like idlab.run.train; seed 1 fails on purpose at d = $SYNTHETIC_FAIL_AT."""
    if str(cfg.adapt.get("d")) == os.environ.get("SYNTHETIC_FAIL_AT") and cfg.seed == 1:
        raise RuntimeError(f"planted failure at d={cfg.adapt.d}")
    metrics = {"test/acc": planted_accuracy(cfg)}
    (Path(HydraConfig.get().runtime.output_dir) / "metrics.json").write_text(json.dumps(metrics))
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
    assert summary["runs"] == {"done": 8, "failed": 0, "pending": 0, "planned": 8}
    assert summary["baseline"] == {**summary["baseline"], "kind": "full", "value": 1.0, "n": 2}
    assert summary["d_int90"]["value"] == 1000 and summary["d_int90"]["ci95"] == [1000, 1000]
    assert summary["d_int100"]["value"] is None and "never reached" in summary["d_int100"]["note"]
    means = {p["value"]: p["mean"] for p in summary["points"]}
    assert means == pytest.approx({100: 0.095, 1000: 0.995, 10000: 0.995})
    for name in ("summary.json", "results.csv", "plot.png", "plan.json"):
        assert (out / name).stat().st_size > 0, name
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    rows = (out / "results.csv").read_text().splitlines()
    assert len(rows) == 9 and rows[0].startswith("role,value,seed,status,metric")


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


def test_a_failed_run_is_reported_without_sinking_the_sweep_and_rerun_next_time(
        config_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "sweep"
    monkeypatch.setenv("SYNTHETIC_FAIL_AT", "1000")
    summary = sweep(config_dir, out)
    assert summary["runs"]["failed"] == 1 and summary["runs"]["done"] == 7
    failed = summary["failed"][0]
    assert (failed["value"], failed["seed"]) == (1000, 1) and "planted failure" in failed["error"]
    assert summary["d_int90"]["value"] == 1000, "the remaining seed still gives the answer"
    assert summary["points"][1]["n"] == 1
    assert main(["--report", str(out)], config_dir) == 1, "exit status 1 while runs are failed"
    before = run_folders(out)
    monkeypatch.delenv("SYNTHETIC_FAIL_AT")
    fixed = sweep(config_dir, out)
    assert fixed["runs"] == {"done": 8, "failed": 0, "pending": 0, "planned": 8}
    assert len(run_folders(out) - before) == 1, "only the failed run is launched again"
    assert fixed["points"][1]["n"] == 2


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
        {"done": 7, "failed": 1, "pending": 0, "planned": 8}
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
