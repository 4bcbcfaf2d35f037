"""Runs reproductions: each result's stages in order, steps of a stage in parallel within a process budget,
shared sweeps once, everything stopped at a wall-clock deadline (finished runs are kept)."""
from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from repro.steps import Result, Step

REPO = Path(__file__).resolve().parents[1]
GRACE_S = 15.0


@dataclass
class Outcome:
    """What happened to one step."""

    label: str
    kind: str
    command: str
    folder: str | None
    status: str = "pending"  # done | kept (finished by an earlier call) | failed | timeout | skipped
    returncode: int | None = None
    started: float | None = None
    wall_s: float | None = None
    log: str | None = None


class Slots:
    """A counting semaphore for process slots (a joblib sweep takes n_jobs of them at once)."""

    def __init__(self, total: int) -> None:
        self.total, self.free = max(1, total), max(1, total)
        self.cond = threading.Condition()

    def acquire(self, n: int) -> None:
        """Block until n slots (capped at the total) are free, then take them."""
        n = min(max(1, n), self.total)
        with self.cond:
            self.cond.wait_for(lambda: self.free >= n)
            self.free -= n

    def release(self, n: int) -> None:
        """Give n slots back."""
        n = min(max(1, n), self.total)
        with self.cond:
            self.free += n
            self.cond.notify_all()


class Engine:
    """Executes results concurrently; a step asked for by two results (same folder) runs once."""

    def __init__(self, jobs: int, log_dir: Path, budget_s: float | None = None) -> None:
        self.slots = Slots(jobs)
        self.log_dir = log_dir
        self.deadline = None if budget_s is None else time.monotonic() + budget_s
        self.lock = threading.Lock()
        self.claims: dict[str, tuple[threading.Event, Outcome]] = {}

    def remaining(self) -> float | None:
        """Seconds left before the deadline (None: no deadline)."""
        return None if self.deadline is None else self.deadline - time.monotonic()

    def run_step(self, step: Step) -> Outcome:
        """Run a step (or wait for the result that already claimed it) and return its outcome."""
        with self.lock:
            claimed = self.claims.get(step.key)
            if claimed is None:
                event, outcome = threading.Event(), Outcome(step.label, step.kind, step.shell(),
                                                            str(step.folder) if step.folder else None)
                self.claims[step.key] = (event, outcome)
        if claimed is not None:
            claimed[0].wait()
            return claimed[1]
        try:
            self._execute(step, outcome)
        finally:
            event.set()
        return outcome

    def _execute(self, step: Step, outcome: Outcome) -> None:
        """Start the process once slots are free; stop its whole process group at the deadline."""
        if step.finished():
            outcome.status = "kept"
            return
        self.slots.acquire(step.slots)
        try:
            left = self.remaining()
            if left is not None and left <= 0:
                outcome.status = "skipped"
                return
            self.log_dir.mkdir(parents=True, exist_ok=True)
            log = self.log_dir / (step.label.replace("/", "__") + ".log")
            outcome.log, outcome.started = str(log), time.time()
            with open(log, "w") as handle:
                handle.write(outcome.command + "\n\n")
                handle.flush()
                proc = subprocess.Popen(step.argv(), cwd=REPO, stdout=handle, stderr=subprocess.STDOUT,
                                        start_new_session=True)
                outcome.returncode, timed_out = wait_or_stop(proc, self.remaining())
            outcome.wall_s = time.time() - outcome.started
            outcome.status = "timeout" if timed_out else ("done" if outcome.returncode == 0 else "failed")
        finally:
            self.slots.release(step.slots)

    def run_result(self, result: Result) -> list[Outcome]:
        """The result's stages in order; the steps of a stage in parallel threads."""
        outcomes: list[Outcome] = []
        for stage in result.stages:
            box: list[Outcome | None] = [None] * len(stage)

            def work(i: int, step: Step) -> None:
                box[i] = self.run_step(step)
            in_threads([(work, (i, s)) for i, s in enumerate(stage)])
            outcomes.extend(o for o in box if o is not None)
        return outcomes

    def run(self, results: list[Result]) -> dict[str, tuple[list[Outcome], float, float]]:
        """Every result concurrently: name → (outcomes, start time, wall seconds)."""
        done: dict[str, tuple[list[Outcome], float, float]] = {}

        def work(result: Result) -> None:
            start = time.time()
            outcomes = self.run_result(result)
            done[result.name] = (outcomes, start, time.time() - start)
        in_threads([(work, (r,)) for r in results])
        return done


def in_threads(calls: list[tuple[Callable[..., None], tuple]]) -> None:
    """Run each (function, arguments) in its own thread and wait for all of them."""
    threads = [threading.Thread(target=fn, args=args, daemon=True) for fn, args in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def wait_or_stop(proc: subprocess.Popen, timeout: float | None) -> tuple[int, bool]:
    """Wait for the process; past `timeout`, SIGTERM then SIGKILL its process group. Returns (rc, timed out)."""
    try:
        return proc.wait(timeout=None if timeout is None else max(timeout, 0.0)), False
    except subprocess.TimeoutExpired:
        for sig, grace in ((signal.SIGTERM, GRACE_S), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                return proc.wait(timeout=grace), True
            except subprocess.TimeoutExpired:
                continue
        return proc.wait(), True
