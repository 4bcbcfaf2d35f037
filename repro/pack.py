"""Pack a reproduction's compact results (no checkpoints) into a tarball; tensorboard scalars become scalars.csv.

    python repro/pack.py outputs/repro/li_mnist [more folders ...] --root outputs/repro --out $OUT/li_mnist.tar.gz
"""
from __future__ import annotations

import argparse
import csv
import io
import os
import tarfile
from pathlib import Path

KEEP_NAMES = {"summary.json", "results.csv", "plan.json", "metrics.json", "sweep_run.json", "id.csv",
              "scalars.csv", "repro.json"}
KEEP_HYDRA = {"config.yaml", "overrides.yaml"}
LOG_TAIL_LINES = 60
LIMIT_BYTES = 16 * 2**20


def wanted(path: Path) -> bool:
    """True for the small result files (and the resolved Hydra config) that figures and resuming need."""
    if path.parent.name == ".hydra":
        return path.name in KEEP_HYDRA
    return path.name in KEEP_NAMES


def event_scalars(run_dir: Path) -> list[tuple[int, str, float]]:
    """(step, tag, value) of every scalar in the run's tensorboard/ event files."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    rows: list[tuple[int, str, float]] = []
    for events in sorted((run_dir / "tensorboard").rglob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0, "images": 1, "tensors": 1})
        acc.Reload()
        for tag in acc.Tags().get("scalars", []):
            rows.extend((e.step, tag, float(e.value)) for e in acc.Scalars(tag))
    return sorted(rows)


def write_scalars_csv(run_dir: Path) -> Path | None:
    """run_dir/scalars.csv (step,tag,value) from tensorboard, written atomically; None without event files."""
    rows = event_scalars(run_dir) if (run_dir / "tensorboard").is_dir() else []
    if not rows:
        return None
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(("step", "tag", "value"))
    writer.writerows(rows)
    out = run_dir / "scalars.csv"
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp.write_text(buffer.getvalue())
    os.replace(tmp, out)
    return out


def curve_runs(folder: Path) -> list[Path]:
    """Run folders outside sweeps' runs/ (grokking, pretraining, first subspace) whose curves the figures plot."""
    return [d.parent for d in folder.rglob("tensorboard") if d.is_dir() and (d.parent / ".hydra").is_dir()
            and "runs" not in d.relative_to(folder).parts]


def log_tails(log_dir: Path) -> dict[str, bytes]:
    """The last lines of each step's console log, to read failures without the full logs."""
    tails = {}
    for log in sorted(log_dir.glob("*.log")) if log_dir.is_dir() else []:
        lines = log.read_text(errors="replace").splitlines()
        tails[f"_logs/{log.stem}.tail.txt"] = ("\n".join(lines[:2] + ["…"] + lines[-LOG_TAIL_LINES:]) + "\n").encode()
    return tails


def pack(folders: list[Path], root: Path, out: Path, log_dir: Path | None = None) -> Path:
    """Write `out` (tar.gz, paths relative to `root`) atomically; refuse one over 16 MiB."""
    root = root.resolve()
    members: dict[str, Path] = {}
    for folder in folders:
        folder = folder.resolve()
        if not folder.is_dir():
            continue
        for run in curve_runs(folder):
            write_scalars_csv(run)
        for path in folder.rglob("*"):
            if path.is_file() and wanted(path):
                members[str(path.relative_to(root))] = path
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    with tarfile.open(tmp, "w:gz") as tar:
        for name in sorted(members):
            tar.add(members[name], arcname=name)
        for name, data in (log_tails(log_dir) if log_dir else {}).items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    size = tmp.stat().st_size
    if size > LIMIT_BYTES:
        tmp.unlink()
        raise RuntimeError(f"{out} would be {size / 2**20:.1f} MiB > 16 MiB; pack fewer folders")
    os.replace(tmp, out)
    return out


def main(argv: list[str] | None = None) -> None:
    """Command-line entry: print the tarball's path and size."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--root", type=Path, default=Path("outputs/repro"),
                        help="paths in the tarball are relative to it")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--logs", type=Path, default=None, help="folder of step logs to include as tails")
    args = parser.parse_args(argv)
    path = pack(args.folders, args.root, args.out, args.logs)
    print(f"{path} ({path.stat().st_size / 2**20:.2f} MiB)")


if __name__ == "__main__":
    main()
