"""The building blocks of a reproduction: commands (steps), stages run in parallel, and results."""
from __future__ import annotations

import json
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

ENTRY = {"sweep": ["sweep.py"], "train": ["train.py"], "export": ["-m", "idlab.adapt.export"]}
QUIET = ("++callbacks.progress_bar=null", "+trainer.enable_progress_bar=false")
SMOKE = ("trainer=cpu", "trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
         "trainer.limit_test_batches=1", "trainer.num_sanity_val_steps=0", "trainer.check_val_every_n_epoch=1",
         "data.on_device=false")


@dataclass(frozen=True)
class Settings:
    """How to run: output root, parallel processes, CPU smoke scale, optional seed override."""

    root: Path = Path("outputs/repro")
    jobs: int = 16
    smoke: bool = False
    seeds: tuple[int, ...] | None = None

    def pick_seeds(self, seeds: tuple[int, ...]) -> tuple[int, ...]:
        """The plan's seeds, the user's override, or seed 0 alone in smoke mode."""
        return (0,) if self.smoke else (self.seeds or seeds)

    def pick_values(self, values: tuple[float, ...]) -> tuple[float, ...]:
        """All values, or the two smallest in smoke mode."""
        return tuple(sorted(values)[:2]) if self.smoke else tuple(values)

    def tail(self, *extra: str) -> tuple[str, ...]:
        """Overrides appended to every train/sweep command: quiet console, then the smoke scale last."""
        return (*QUIET, *extra, *(SMOKE if self.smoke else ()))


@dataclass(frozen=True)
class Step:
    """One command: `python sweep.py ARGS`, `python train.py ARGS` or `python -m idlab.adapt.export ARGS`."""

    label: str
    kind: str
    args: tuple[str, ...]
    slots: int = 1  # processes it keeps busy (a joblib sweep: its n_jobs)
    folder: Path | None = None  # the sweep folder or run folder it writes

    def __post_init__(self) -> None:
        if self.kind not in ENTRY:
            raise ValueError(f"step kind {self.kind!r} is not one of {sorted(ENTRY)}")

    def argv(self) -> list[str]:
        """The command as an argument vector (run from the repository root)."""
        return [sys.executable, *ENTRY[self.kind], *self.args]

    def shell(self) -> str:
        """The command as one copy-pasteable shell line."""
        return " ".join(shlex.quote(a) for a in ["python", *ENTRY[self.kind], *self.args])

    def finished(self) -> bool:
        """A train step whose run folder has metrics.json, or an export whose file exists: a rerun keeps it.
        Sweeps are never finished here: sweep.py itself skips the runs it already has."""
        if self.folder is None or self.kind == "sweep":
            return False
        return (self.folder / "metrics.json").is_file() if self.kind == "train" else self.folder.is_file()

    @property
    def key(self) -> str:
        """Identity for de-duplication: two results asking for the same sweep folder share one run of it."""
        return str(self.folder) if self.folder is not None else self.label


@dataclass(frozen=True)
class Result:
    """A reproduction: sequential stages of parallel steps, writing under root/name (plus shared sweep folders)."""

    name: str
    title: str
    stages: tuple[tuple[Step, ...], ...]
    scale: str
    extra_dirs: tuple[Path, ...] = field(default=())

    def steps(self) -> list[Step]:
        """Every step, in order."""
        return [step for stage in self.stages for step in stage]

    def sweep_dirs(self) -> list[Path]:
        """Sweep folders written by this result (to re-aggregate at the end)."""
        return [s.folder for s in self.steps() if s.kind == "sweep" and s.folder is not None]


def hydra_list(values: tuple) -> str:
    """A Hydra list literal: [1,2,3] or ["a=b","c"] (strings double-quoted)."""
    return "[" + ",".join(json.dumps(v) if isinstance(v, str) else format_number(v) for v in values) + "]"


def format_number(value: float) -> str:
    """Integers without a decimal point."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def launcher(settings: Settings, n_jobs: int) -> tuple[str, ...]:
    """joblib with n_jobs parallel runs on the GPU machine; the in-process basic launcher in smoke mode."""
    if settings.smoke or n_jobs <= 1:
        return ()
    return ("hydra/launcher=joblib", f"hydra.launcher.n_jobs={n_jobs}")


def sweep_step(settings: Settings, label: str, folder: Path, head: tuple[str, ...], values: tuple[float, ...],
               seeds: tuple[int, ...], n_jobs: int, baseline_overrides: tuple[str, ...] = ()) -> Step:
    """A sweep.py command over `values` × `seeds` into `folder`, with `head` (the +exp and overrides) first."""
    args = [*head, f"sweep.values={hydra_list(settings.pick_values(values))}",
            f"sweep.seeds={hydra_list(settings.pick_seeds(seeds))}", f"sweep.dir={folder}"]
    if baseline_overrides:
        args.append(f"sweep.baseline_overrides={hydra_list(baseline_overrides)}")
    jobs = 1 if settings.smoke else max(1, min(n_jobs, settings.jobs))
    return Step(label, "sweep", (*args, *launcher(settings, jobs), *settings.tail()), jobs, folder)


def train_step(settings: Settings, label: str, folder: Path, head: tuple[str, ...], *extra: str) -> Step:
    """A train.py command writing into `folder` (hydra.run.dir)."""
    return Step(label, "train", (*head, *extra, f"hydra.run.dir={folder}", *settings.tail()), 1, folder)


def export_step(label: str, run_dir: Path, out: Path) -> Step:
    """Export a finished run's plain weights (θ0 + P·θ_d, merged LoRA, or as trained) to `out`."""
    return Step(label, "export", (str(run_dir), "--checkpoint", "last", "--out", str(out)), 1, out)
