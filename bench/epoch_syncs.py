"""Host-device synchronisations per epoch of one Li-grid run on the GPU, with and without a progress bar.

python bench/epoch_syncs.py [--epochs 20] [--out DIR] [--label NAME]
One run of the Li FC grid as sweep.py runs it (784-200-200-10 in a Fastfood subspace of d = 1000, Adam, mnist_mini on
the device, captured steps, validation every epoch, checkpoints, tensorboard and CSV loggers), twice, each in its
own process: without a progress bar (as bench/sweep_throughput.py runs the grid) and with Lightning's default bar.
Under torch.cuda.set_sync_debug_mode("warn") every synchronising call is counted by the innermost Python frame
outside torch that made it, over the epochs after the first (capture and warm-up happen in the first). Whatever
`idlab` is importable is measured (PYTHONPATH may point at another checkout; --label names it). The two runs must
write the same metrics.csv: the script reports whether they do, and the largest difference if not. Writes
epoch_syncs[_LABEL].json.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUN = ["data=mnist_mini", "model=fc", "adapt=subspace", "adapt.d=1000", "optim=adam", "trainer=gpu", "test=false"]
VARIANTS = {
    "no bar": ["++callbacks.progress_bar=null", "+trainer.enable_progress_bar=false"],
    "progress bar": ["+trainer.enable_progress_bar=true"],
}


def child(epochs: int, out_dir: Path, extra: list[str]) -> dict:
    """One run in this process; the synchronisations of epochs 1.. counted by site."""
    import pytorch_lightning as pl
    import torch

    sys.path.insert(0, str(REPO / "tests"))
    from conftest import compose_config

    import idlab.run as run

    cfg = compose_config([*RUN, f"trainer.max_epochs={epochs}", f"paths.data_dir={REPO / 'data'}",
                          "logger=tensorboard_csv", *extra], out_dir, fast=False)
    sites: Counter[str] = Counter()
    torch_dir = str(Path(torch.__file__).resolve().parent) + "/"
    counting = {"on": False}

    class Gate(pl.Callback):
        graph_steps = ()  # acts at epoch starts only: chunking stays as in a sweep

        def on_train_epoch_start(self, trainer, pl_module) -> None:  # noqa: ANN001
            counting["on"] = trainer.current_epoch >= 1

    original_warn = warnings.showwarning

    def record(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001, ANN202
        if "synchroniz" not in str(message):
            return original_warn(message, category, filename, lineno, file, line)
        if counting["on"]:
            frames = [f for f in traceback.extract_stack()[:-1] if "warnings.py" not in f.filename
                      and not str(Path(f.filename).resolve()).startswith(torch_dir)]
            where = frames[-1] if frames else None
            sites[f"{Path(where.filename).name}:{where.lineno} {where.name}" if where else filename] += 1
        return None

    build = run.build_trainer

    def with_gate(c):  # noqa: ANN001, ANN202
        trainer = build(c)
        trainer.callbacks.insert(0, Gate())
        return trainer

    run.build_trainer = with_gate
    torch.cuda.set_sync_debug_mode("warn")
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = record
        try:
            metrics = run.train(cfg)
        finally:
            warnings.showwarning = original_warn
            torch.cuda.set_sync_debug_mode(0)
    counted = epochs - 1
    return {"wall_s": time.perf_counter() - started, "epochs_counted": counted,
            "syncs_per_epoch": sum(sites.values()) / counted,
            "sites_per_epoch": {k: v / counted for k, v in sites.most_common(25)},
            "val_acc": metrics.get("val/acc"), "csv": str(out_dir / "csv" / "metrics.csv")}


def csv_difference(a: Path, b: Path) -> dict:
    """Whether two metrics.csv files are the same text, else the largest numeric difference between them."""
    ta, tb = a.read_text(), b.read_text()
    if ta == tb:
        return {"identical": True, "rows": ta.count("\n")}
    worst = 0.0
    for la, lb in zip(ta.splitlines()[1:], tb.splitlines()[1:]):
        for x, y in zip(la.split(","), lb.split(",")):
            if x != y:
                try:
                    worst = max(worst, abs(float(x) - float(y)))
                except ValueError:
                    worst = float("inf")
    return {"identical": False, "rows": (ta.count("\n"), tb.count("\n")), "max_abs_difference": worst}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "bench_epoch_syncs")
    parser.add_argument("--label", default="", help="names the idlab measured (e.g. a commit)")
    parser.add_argument("--child", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        out_dir, *extra = args.child
        print(json.dumps(child(args.epochs, Path(out_dir), extra)))
        return
    import torch

    args.out.mkdir(parents=True, exist_ok=True)
    result = {"device": torch.cuda.get_device_name(), "date": time.strftime("%Y-%m-%d"), "epochs": args.epochs,
              "run": RUN, "label": args.label,
              "idlab": str(Path(__import__("idlab").__file__).parent), "variants": {}}
    work = Path(tempfile.mkdtemp())
    for name, extra in VARIANTS.items():
        folder = work / name.replace(" ", "_")
        proc = subprocess.run([sys.executable, __file__, "--epochs", str(args.epochs), "--child", str(folder), *extra],
                              capture_output=True, text=True, cwd=REPO)
        lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
        result["variants"][name] = json.loads(lines[-1]) if lines else {"error": proc.stderr[-3000:]}
        print(name, {k: v for k, v in result["variants"][name].items() if k != "sites_per_epoch"}, flush=True)
    runs = [result["variants"][n].get("csv") for n in VARIANTS]
    if all(runs):
        result["csv_no_bar_vs_bar"] = csv_difference(Path(runs[0]), Path(runs[1]))
    (args.out / f"epoch_syncs{'_' + args.label if args.label else ''}.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
