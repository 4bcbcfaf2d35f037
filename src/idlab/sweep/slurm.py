"""SLURM jobs that outlive the sweep.py that submitted them: which are still queued or running, and waiting for them.

submitit leaves `<folder>/<job id>_submitted.pkl` for every job it submits (the launcher's `submitit_folder`,
`runs/.submitit/%j` in a sweep). A rerun of a killed sweep.py reads those, asks `squeue` which jobs are still
pending or running, and waits for them instead of submitting their runs a second time.
"""
from __future__ import annotations

import getpass
import logging
import shutil
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

from idlab.sweep.spec import SweepConfigError

log = logging.getLogger(__name__)

SUBMITTED_SUFFIX = "_submitted.pkl"
# States squeue may still list for a job that will not run again (it lists ended jobs for MinJobAge seconds).
ENDED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL",
         "DEADLINE", "SPECIAL_EXIT", "REVOKED"}


def submitted_jobs(roots: Iterable[Path]) -> dict[str, Path]:
    """job id → its submitted pickle, for every job submitit submitted under these folders."""
    jobs: dict[str, Path] = {}
    for root in roots:
        if root.is_dir():
            for pickle_path in root.rglob(f"*{SUBMITTED_SUFFIX}"):
                jobs[pickle_path.name[: -len(SUBMITTED_SUFFIX)]] = pickle_path
    return jobs


def submitted_overrides(pickle_path: Path) -> list[str]:
    """The job overrides a submitit job of Hydra's submitit launcher was submitted with."""
    from submitit.core.utils import DelayedSubmission

    return list(DelayedSubmission.load(pickle_path).args[0])


def live_jobs(job_ids: Iterable[str]) -> dict[str, str]:
    """job id → state for those of `job_ids` that SLURM still has pending or running (array tasks as A_i)."""
    wanted = set(job_ids)
    if not wanted:
        return {}
    if shutil.which("squeue") is None:
        log.warning("%d submitit jobs were submitted into this sweep earlier and squeue is not on PATH here: "
                    "if they went to a SLURM cluster, jobs still queued there cannot be detected and their runs "
                    "are launched again", len(wanted))
        return {}
    command = ["squeue", "--noheader", "--array", "--format=%i|%T", f"--user={getpass.getuser()}"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    except subprocess.TimeoutExpired as err:
        raise SweepConfigError(f"squeue did not answer within 120 s ({err}); rerun when the scheduler "
                               "answers, so that runs still queued from an earlier sweep.py are not submitted twice")
    if done.returncode != 0:
        raise SweepConfigError(f"squeue failed ({done.stderr.strip() or done.returncode}); rerun when the "
                               "scheduler answers, so that runs still queued from an earlier sweep.py are not "
                               "submitted twice")
    states = {}
    for line in done.stdout.splitlines():
        job_id, _, state = line.strip().partition("|")
        if job_id in wanted and state not in ENDED:
            states[job_id] = state
    return states


def wait_for(jobs: dict[str, str], poll_s: float = 2.0, max_poll_s: float = 30.0) -> None:
    """Block until none of these job ids (id → what it runs, for the log) is pending or running any more."""
    remaining = dict(jobs)
    while remaining:
        states = live_jobs(remaining)
        for job_id in set(remaining) - set(states):
            log.info("SLURM job %s (%s) has ended", job_id, remaining.pop(job_id))
        if remaining:
            time.sleep(poll_s)
            poll_s = min(poll_s * 1.5, max_poll_s)
