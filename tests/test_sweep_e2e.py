"""Real tiny sweeps (FC on a small MNIST in torchvision's format, a few CPU batches) through the basic, joblib,
fork and submitit_local launchers."""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest
from hydra.core.global_hydra import GlobalHydra

from idlab.sweep.cli import describe
from idlab.sweep.driver import run_sweep
from idlab.sweep.records import RUNS_DIR
from idlab.sweep.spec import SweepConfigError

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
TINY = ["trainer=cpu", "trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1", "trainer.num_sanity_val_steps=0", "++callbacks.progress_bar=null",
        "+trainer.enable_progress_bar=false", "logger=none", "~callbacks.lr_monitor", "data=mnist", "data.val_size=50", "data.on_device=false", "model.depth=1"]
WIDTH_SWEEP = ["sweep.param=model.width", "sweep.values=[4,16]", "sweep.metric=test/acc"]


@pytest.fixture(autouse=True)
def small_mnist(mnist_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs read the fixture's small MNIST (paths.data_dir comes from $IDLAB_DATA_DIR, also in launched jobs)."""
    monkeypatch.setenv("IDLAB_DATA_DIR", str(mnist_dir))
    GlobalHydra.instance().clear()


def sweep(out: Path, *args: str) -> dict:
    return run_sweep(CONFIG_DIR, [*TINY, *WIDTH_SWEEP, f"sweep.dir={out}", *args])


def records(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((out / RUNS_DIR).glob("*/sweep_run.json"))]


def test_basic_launcher_trains_every_run_and_a_rerun_in_a_new_process_state_launches_nothing(tmp_path: Path) -> None:
    out = tmp_path / "basic"
    summary = sweep(out, "sweep.seeds=[0,1]")
    assert summary["runs"] == {"done": 6, "failed": 0, "pending": 0, "planned": 6, "diverged": 0}, \
        summary["failed"]
    assert summary["baseline"]["kind"] == "full" and summary["baseline"]["n"] == 2
    for point in summary["points"]:
        assert point["n"] == 2 and 0.0 <= point["mean"] <= 1.0
    metrics = json.loads(next((out / RUNS_DIR).glob("*/metrics.json")).read_text())
    assert "test/acc" in metrics and "params/trainable" in metrics
    # Read from the runs' resolved configs: the seed drew the init and the batch order, not the split.
    assert set(summary["randomness"]["varied"]) == {"seed", "data.seed"}
    assert summary["randomness"]["fixed"]["data.split_seed"] == 0
    # Each run's config key, computed inside the job, matches the planner's: nothing is rerun.
    GlobalHydra.instance().clear()
    again = sweep(out, "sweep.seeds=[0,1]")
    assert len(records(out)) == 6 and again["points"] == summary["points"]
    # More seeds later: only the new seed's runs are launched.
    more = sweep(out, "sweep.seeds=[0,1,2]")
    assert len(records(out)) == 9 and more["runs"]["done"] == 9


def test_joblib_launcher_runs_jobs_in_parallel_processes(tmp_path: Path) -> None:
    out = tmp_path / "joblib"
    summary = sweep(out, "sweep.seeds=[0]", "sweep.baseline=0.5", "sweep.values=[4,8,16,32]",
                    "hydra/launcher=joblib", "hydra.launcher.n_jobs=2")
    assert summary["runs"] == {"done": 4, "failed": 0, "pending": 0, "planned": 4, "diverged": 0}, \
        summary["failed"]
    assert summary["baseline"] == {**summary["baseline"], "kind": "given", "value": 0.5}
    pids = {r["pid"] for r in records(out)}
    assert os.getpid() not in pids and len(pids) <= 2, "runs execute in the (at most two) loky worker processes"


def test_fork_launcher_trains_in_forked_children_exactly_as_the_basic_launcher(tmp_path: Path) -> None:
    args = ("sweep.seeds=[0]", "sweep.baseline=0.5", "sweep.values=[4,16]")
    basic = sweep(tmp_path / "basic", *args)
    GlobalHydra.instance().clear()
    forked = sweep(tmp_path / "fork", *args, "hydra/launcher=fork", "hydra.launcher.n_jobs=2")
    assert forked["runs"] == {"done": 2, "failed": 0, "pending": 0, "planned": 2, "diverged": 0}, forked["failed"]
    assert forked["points"] == basic["points"], "the same seed trains to the same metrics in a forked child"
    pids = {r["pid"] for r in records(tmp_path / "fork")}
    assert len(pids) == 2 and os.getpid() not in pids


def test_submitit_local_launcher_runs_jobs_as_submitit_jobs(tmp_path: Path) -> None:
    out = tmp_path / "submitit"
    summary = sweep(out, "sweep.seeds=[0]", "sweep.baseline=0.5", "hydra/launcher=submitit_local",
                    "hydra.launcher.timeout_min=5")
    assert summary["runs"]["done"] == 2, summary["failed"]
    assert (out / RUNS_DIR / ".submitit").is_dir()


def test_d_larger_than_the_model_fails_before_launching(tmp_path: Path) -> None:
    out = tmp_path / "subspace"
    # FC 784-4-10 has D = 3,190 parameters: d = 5,000 cannot be a subspace of it.
    with pytest.raises(SweepConfigError, match=r"adapt\.d=5000 does not work for this model.*exceeds D=3190"):
        run_sweep(CONFIG_DIR, [*TINY, "adapt=subspace", "model.width=4", "sweep.param=adapt.d",
                               "sweep.values=[100,5000]", f"sweep.dir={out}"])
    assert not (out / RUNS_DIR).exists()


def test_lora_rank_above_a_layer_rank_fails_before_launching(tmp_path: Path) -> None:
    out = tmp_path / "lora"
    with pytest.raises(SweepConfigError, match=r"adapt\.r=64 does not work for this model.*clip_r"):
        run_sweep(CONFIG_DIR, [*TINY, "adapt=lora", "adapt.clip_r=false", "model.width=8", "sweep.param=adapt.r",
                               "sweep.values=[2,64]",
                               "sweep.baseline=0.9", f"sweep.dir={out}"])
    assert not list((out / RUNS_DIR).glob("*/sweep_run.json")) if (out / RUNS_DIR).exists() else True


def test_ddp_with_a_local_launcher_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SweepConfigError, match="relaunching the sweep.*tasks_per_node=2"):
        sweep(tmp_path / "ddp", "trainer=ddp")


def test_slurm_launcher_config_carries_partition_gpus_and_time(tmp_path: Path) -> None:
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", ["hydra/launcher=slurm", "hydra.launcher.partition=gpu", "trainer=ddp",
                                "hydra.launcher.tasks_per_node=2", "hydra.launcher.gpus_per_node=2"],
                      return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.partition, launcher.gpus_per_node, launcher.timeout_min) == ("gpu", 2, 240)
    from idlab.sweep.guard import check_single_process_jobs

    check_single_process_jobs(cfg)  # DDP with SLURM starting one task per GPU is the supported way



def test_a_sweep_where_every_run_diverges_still_reports_every_planned_seed_at_every_value(tmp_path: Path) -> None:
    out = tmp_path / "diverged"
    summary = sweep(out, "sweep.seeds=[0,1]", "optim=sgd", "optim.optimizer.lr=1e30")
    assert summary["runs"] == {"done": 6, "failed": 0, "pending": 0, "planned": 6, "diverged": 6}, summary["failed"]
    for point in summary["points"]:
        assert point["n"] == 2 and point["diverged"] == [0, 1] and point["complete"]
        assert set(point["seeds"]) == {"0", "1"}
    assert {p["value"] for p in summary["points"]} == {4, 16}
    assert summary["baseline"]["n"] == 2 and summary["baseline"]["diverged"] == [0, 1]
    assert all(d["counted_as"] in ("chance", "last good state") for d in summary["diverged"])
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == 6 and all(r["status"] == "done" and r["diverged"] == "1" and r["metric"] for r in rows)
    assert describe(summary).count("DIVERGED") == 6


def test_runs_side_by_side_in_one_job_train_exactly_as_one_by_one(tmp_path: Path) -> None:
    args = ["sweep.seeds=[0,1]", "sweep.baseline=0.5", "sweep.values=[4,8]"]
    alone = sweep(tmp_path / "alone", *args)
    side = sweep(tmp_path / "side", *args, "sweep.runs_per_job=4", "sweep.side_by_side=4")
    assert side["runs"]["done"] == alone["runs"]["done"] == 4

    def metrics(out: Path) -> dict[str, dict]:
        return {json.loads((p / "sweep_run.json").read_text())["key"]: json.loads((p / "metrics.json").read_text())
                for p in (out / RUNS_DIR).glob("[0-9]*")}
    assert metrics(tmp_path / "side") == metrics(tmp_path / "alone"), "same init, same data order, same result"
    folders = sorted((tmp_path / "side" / RUNS_DIR).glob("[0-9]*"))
    for folder in folders:
        assert (folder / "checkpoints" / "last.ckpt").exists(), "each run checkpoints into its own folder"
        log = (folder / "train.log").read_text()
        assert f"{folder}/checkpoints/best.ckpt" in log, "each run's train.log holds its own lines"
        assert not any(f"{other}/checkpoints" in log for other in folders if other != folder), "and no other's"
