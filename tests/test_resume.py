"""Resume that loses nothing and repeats nothing: a sweep rerun continues a killed run from its last.ckpt in its
own folder, ends where an uninterrupted run ends, and its id.csv has every measurement exactly once."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.core.global_hydra import GlobalHydra

from conftest import CONFIG_DIR, REPO
from idlab.run import train
from idlab.sweep.driver import run_sweep
from idlab.sweep.records import RUNS_DIR

TINY = ["trainer=cpu", "trainer.max_epochs=3", "trainer.limit_train_batches=3", "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1", "trainer.num_sanity_val_steps=0", "++callbacks.progress_bar=null",
        "+trainer.enable_progress_bar=false", "logger=none", "data=mnist", "data.val_size=50",
        "data.on_device=false", "data.batch_size=64", "model.depth=1"]
# Activation ID every epoch (steps 0, 3, 6 and 9 at the end), and a switch that SIGKILLs the first attempt at step 7:
# after the epoch-1 checkpoint (step 6) and after the step-6 measurement was written to id.csv.
SWEEP = [*TINY, "callbacks=id", "~callbacks.lr_monitor", "callbacks.activation_id.num_samples=40",
         "callbacks.activation_id.figure=false", "+callbacks.killer._target_=killswitch.KillSwitch",
         "+callbacks.killer.step=7", "sweep.param=model.width", "sweep.values=[8,16]", "sweep.baseline=0.5",
         "sweep.seeds=[0]"]


def id_rows(run: Path) -> list[tuple[str, str, str, float]]:
    with open(run / "id.csv", newline="") as handle:
        return [(r["step"], r["split"], r["layer"], float(r["value"])) for r in csv.DictReader(handle)]


def run_folders(sweep_dir: Path) -> dict[int, Path]:
    """model.width → run folder."""
    out = {}
    for run in (sweep_dir / RUNS_DIR).iterdir():
        if run.name.isdigit():
            out[int(json.loads((run / "metrics.json").read_text())["params/total"])] = run
    return out


def test_a_killed_sweep_run_continues_from_its_last_checkpoint(tmp_path: Path, mnist_dir: Path, one_thread,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    out, marker = tmp_path / "sweep", tmp_path / "killed.marker"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO / "tests")]),
           "IDLAB_DATA_DIR": str(mnist_dir), "IDLAB_TEST_KILL_MARKER": str(marker), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "sweep.py", *SWEEP, f"sweep.dir={out}"]
    killed = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert killed.returncode == -9 and marker.exists(), killed.stderr[-3000:]
    (victim,) = [p.parent for p in (out / RUNS_DIR).glob("*/sweep_run.json")]
    assert json.loads((victim / "sweep_run.json").read_text())["status"] == "running"
    assert (victim / "checkpoints" / "last.ckpt").is_file() and "6" in {r[0] for r in id_rows(victim)}

    rerun = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    record = json.loads((victim / "sweep_run.json").read_text())
    assert record["status"] == "done" and record["resumed_from"].endswith("last.ckpt")
    resumed = run_folders(out)
    assert len(resumed) == 2 and victim in resumed.values(), "the killed run continues in its own folder"

    monkeypatch.setenv("IDLAB_DATA_DIR", str(mnist_dir))
    monkeypatch.delenv("IDLAB_TEST_KILL_MARKER", raising=False)
    GlobalHydra.instance().clear()
    run_sweep(CONFIG_DIR, [*SWEEP, f"sweep.dir={tmp_path / 'uninterrupted'}"])
    reference = run_folders(tmp_path / "uninterrupted")
    assert resumed.keys() == reference.keys()
    for width, run in resumed.items():
        got, want = (json.loads((r / "metrics.json").read_text()) for r in (run, reference[width]))
        assert got["global_step"] == want["global_step"] == 9
        for key in ("val/loss", "test/acc", "train/loss", "id/val/llid"):
            assert got[key] == pytest.approx(want[key], rel=1e-6), (width, key)
        rows, expected = id_rows(run), id_rows(reference[width])
        assert [r[:3] for r in rows] == [r[:3] for r in expected], "every measurement once, none lost"
        assert [r[3] for r in rows] == pytest.approx([r[3] for r in expected], rel=1e-5)


@pytest.mark.parametrize("background", ["false", "true"])
def test_id_csv_after_resuming_in_the_same_folder_has_no_duplicate_rows(make_cfg, background: str) -> None:
    common = ["callbacks=id", "model.width=32", "callbacks.activation_id.num_samples=100",
              "callbacks.activation_id.figure=false", "trainer.limit_train_batches=3", "test=false",
              f"callbacks.activation_id.background={background}"]
    full = make_cfg(*common, "trainer.max_epochs=3", run="full")
    train(full)
    train(make_cfg(*common, "trainer.max_epochs=2", run="same"))  # also measures its end (step 6)
    resumed = make_cfg(*common, "trainer.max_epochs=3", "ckpt_path=last", run="same")
    train(resumed)
    rows, expected = id_rows(Path(resumed.paths.output_dir)), id_rows(Path(full.paths.output_dir))
    assert [r[0] for r in expected] == ["0", "0", "3", "3", "6", "6", "9", "9"]
    assert [r[:3] for r in rows] == [r[:3] for r in expected]
    assert [r[3] for r in rows] == pytest.approx([r[3] for r in expected], rel=1e-5)
