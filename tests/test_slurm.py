"""Sweeps on a real SLURM cluster (`pytest -m slurm`): a one-node slurmctld + slurmd on localhost, a tiny sweep
through hydra/launcher=slurm as real sbatch array jobs, the driver killed mid-sweep and rerun: every run is
submitted exactly once and finishes."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO
from slurm_cluster import Cluster, install_packages, unavailable_reason

pytestmark = pytest.mark.slurm

SWEEP = ["trainer=cpu", "trainer.max_epochs=2", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
         "trainer.limit_test_batches=1", "trainer.num_sanity_val_steps=0", "++callbacks.progress_bar=null",
         "+trainer.enable_progress_bar=false", "logger=none", "~callbacks.lr_monitor", "data=mnist",
         "data.val_size=50", "data.on_device=false", "model.depth=1",
         "sweep.param=model.width", "sweep.values=[4,16]", "sweep.seeds=[0]", "sweep.metric=test/acc",
         # one CPU, no GPU, no memory request; one array task at a time, so the later ones are still queued
         # when the driver dies
         "hydra/launcher=slurm", "hydra.launcher.gpus_per_node=null", "hydra.launcher.cpus_per_task=1",
         "hydra.launcher.mem_gb=null", "hydra.launcher.timeout_min=10", "hydra.launcher.array_parallelism=1"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    """A running one-node cluster, stopped (jobs cancelled, daemons killed) after the module's tests."""
    reason = unavailable_reason() or install_packages()
    if reason:
        pytest.skip(f"no SLURM cluster: {reason}")
    cluster = Cluster(tmp_path_factory.mktemp("slurm"))
    try:
        cluster.start(cpus=os.cpu_count() or 1)
        yield cluster
    finally:
        cluster.stop()


def submitted(out: Path) -> set[str]:
    """Job ids submitit submitted into the sweep (one *_submitted.pkl per sbatch array task)."""
    return {p.name.removesuffix("_submitted.pkl") for p in (out / "runs" / ".submitit").rglob("*_submitted.pkl")}


def test_a_killed_slurm_sweep_is_resumed_without_submitting_a_run_twice(cluster: Cluster, tmp_path: Path,
                                                                         mnist_dir: Path) -> None:
    out = tmp_path / "sweep"
    env = {**cluster.env, "PYTHONPATH": str(REPO / "src"), "IDLAB_DATA_DIR": str(mnist_dir), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "sweep.py", *SWEEP, f"sweep.dir={out}"]
    driver = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 180
        while time.time() < deadline and driver.poll() is None and len(submitted(out)) < 3:
            time.sleep(0.2)
        assert len(submitted(out)) == 3, f"the driver did not submit the 3 runs\n{cluster.logs()}"
        # Hold what is still queued (partition down) until the rerun has looked at the queue.
        assert cluster.run("scontrol", "update", "PartitionName=debug", "State=DOWN").returncode == 0
        queue = cluster.run("squeue", "--noheader", "--array", "--format=%i %T").stdout.split("\n")
        assert sum("PENDING" in line for line in queue) >= 2, f"expected queued runs when the driver dies: {queue}"
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    first = submitted(out)

    log = tmp_path / "rerun.log"
    with open(log, "w") as handle:
        rerun = subprocess.Popen(command, cwd=REPO, env=env, stdout=handle, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 180
        while time.time() < deadline and rerun.poll() is None and "still queued" not in log.read_text():
            time.sleep(0.2)
        waiting = re.search(r"(\d+) to launch .* (\d+) still queued or running on SLURM", log.read_text())
        assert waiting and waiting[1] == "0" and int(waiting[2]) >= 2, log.read_text()[-3000:]
        assert cluster.run("scontrol", "update", "PartitionName=debug", "State=UP").returncode == 0
        assert rerun.wait(timeout=300) == 0, log.read_text()[-3000:] + cluster.logs()
    finally:
        if rerun.poll() is None:
            rerun.kill()
            rerun.wait()
    assert submitted(out) == first, "the rerun submitted runs again that SLURM still had queued or running"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["runs"] == {"done": 3, "failed": 0, "pending": 0, "planned": 3, "diverged": 0}, summary["failed"]
    records = [json.loads(p.read_text()) for p in (out / "runs").glob("*/sweep_run.json")]
    assert len(records) == 3 and {r["slurm_job_id"] for r in records} == first, "one job, one folder, per run"
    assert cluster.run("squeue", "--noheader").stdout.strip() == "", "every job has ended"

    # A value added later: one new job, submitted and waited for by submitit itself, without accounting (sacct).
    more = [*command[:-1], "sweep.values=[4,16,32]", command[-1]]
    grown = subprocess.run(more, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert grown.returncode == 0, grown.stderr[-3000:] + cluster.logs()
    assert len(submitted(out) - first) == 1 and json.loads((out / "summary.json").read_text())["runs"]["done"] == 4
