"""repro/: the scripts' helpers resume and record, a call stops at its budget and keeps what finished, packing keeps
only small files, every study runs end to end at smoke size, and docs/results.md states only what the runs show."""
from __future__ import annotations

import csv
import json
import os
import shlex
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from conftest import compose_config
from fake_datasets import write_mnist
from idlab.run import train
from idlab.sweep.arguments import split_sweep_overrides
from idlab.sweep.cli import main as sweep_main
from idlab.sweep.report import report

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from repro import call  # noqa: E402
from repro.results import NOT_RUN, render  # noqa: E402

CONFIG_DIR = REPO / "configs"
SCRIPTS = sorted(str(p.relative_to(REPO / "repro").with_suffix("")) for p in (REPO / "repro").glob("*/*.sh"))
SMOKE = ["trainer=cpu", "trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
         "trainer.limit_test_batches=1", "trainer.num_sanity_val_steps=0", "trainer.check_val_every_n_epoch=1",
         "data.on_device=false"]


def bash(script: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run a bash script with extra environment variables."""
    return subprocess.run(["bash", str(script)], env={**os.environ, **env}, capture_output=True, text=True, timeout=120)


# --------------------------------------------------------------------------------------------------- repro/lib.sh
FAKE_PYTHON = """#!/usr/bin/env bash
# Stands in for python: logs its arguments; train.py writes metrics.json unless FAIL matches an argument.
echo "$*" >> "$LOG"
for a in "$@"; do case "$a" in hydra.run.dir=*) dir=${a#hydra.run.dir=};; esac; [ "$a" = "${FAIL:-none}" ] && exit 3; done
if [ "$1" = train.py ]; then mkdir -p "$dir" && echo '{}' > "$dir/metrics.json"; fi
"""


def test_lib_keeps_finished_runs_sets_unfinished_ones_aside_and_counts_failures(tmp_path: Path) -> None:
    fake = tmp_path / "python"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    script = tmp_path / "scripts" / "mini" / "demo.sh"
    script.parent.mkdir(parents=True)
    script.write_text(f". {REPO / 'repro' / 'lib.sh'}\n"
                      "train_once done +exp=a seed=0\ntrain_once half +exp=a seed=1\n"
                      "sweep grid +exp=b\ntrain_once broken +exp=a bad=1\necho after\nfinish\n")
    root = tmp_path / "root"
    (root / "mini" / "demo" / "done").mkdir(parents=True)
    (root / "mini" / "demo" / "done" / "metrics.json").write_text("{}")
    (root / "mini" / "demo" / "half").mkdir()
    (root / "mini" / "demo" / "half" / "last.ckpt").write_text("partial")
    env = {"ROOT": str(root), "PYTHON": str(fake), "LOG": str(tmp_path / "log"), "REPRO_COMMANDS": str(tmp_path / "cmds"),
           "SEEDS": "0,2", "JOBS": "4", "FAIL": "bad=1"}
    result = bash(script, env)
    calls = (tmp_path / "log").read_text().splitlines()
    assert result.returncode == 1 and "after" in result.stdout, "a failed command is counted, the script goes on"
    assert not any("seed=0" in c for c in calls), "a finished run is kept, not trained again"
    assert [p.name for p in (root / "mini" / "demo").glob("half.unfinished.*")], "an unfinished run is set aside"
    assert (root / "mini" / "demo" / "half" / "metrics.json").is_file()
    sweep = next(c for c in calls if c.startswith("sweep.py"))
    assert f"sweep.seeds=[0,2] sweep.dir={root}/mini/demo/grid hydra/launcher=joblib hydra.launcher.n_jobs=4" in sweep
    recorded = (tmp_path / "cmds").read_text().splitlines()
    assert recorded[0].startswith("python train.py +exp=a seed=1 hydra.run.dir=")
    assert shlex.split(recorded[1])[:2] == ["python", "sweep.py"] and "'sweep.seeds=[0,2]'" in recorded[1]
    dry = bash(script, {**env, "DRY": "1", "REPRO_COMMANDS": ""})
    assert dry.returncode == 0 and dry.stdout.count("+ python") == 2 and len(calls) == len(
        (tmp_path / "log").read_text().splitlines()), "DRY=1 prints the commands and runs none"


# ----------------------------------------------------------------------------------------------------- repro/call.py
def test_a_call_stops_at_its_budget_keeps_what_finished_and_resumes_the_record(tmp_path: Path) -> None:
    scripts = tmp_path / "scripts" / "full"
    scripts.mkdir(parents=True)
    (scripts / "slow.sh").write_text("sleep 300 &\necho $! > \"$ROOT/full/slow/child.pid\"\n"
                                     "echo 'python sweep.py +exp=x' >> \"$REPRO_COMMANDS\"\nsleep 300\n")
    (scripts / "quick.sh").write_text("mkdir -p \"$ROOT/full/quick/run\"\necho '{}' > \"$ROOT/full/quick/run/metrics.json\"\n"
                                      "head -c 4096 /dev/zero > \"$ROOT/full/quick/run/last.ckpt\"\n")
    (scripts / "late.sh").write_text("exit 0\n")
    root, out = tmp_path / "root", tmp_path / "out"
    args = ["--scripts", str(tmp_path / "scripts"), "--root", str(root), "--out", str(out), "--budget", "4"]
    call.GRACE_S = 2.0
    start = time.monotonic()
    assert call.main([*args, "full/quick,full/slow,full/late"]) == 1
    assert time.monotonic() - start < 60, "the slow script was stopped at the budget"
    child = int((root / "full" / "slow" / "child.pid").read_text())
    time.sleep(0.5)
    assert not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2], \
        "the script's whole process group was stopped"
    records = {n: json.loads((root / "full" / n / "repro.json").read_text()) for n in ("quick", "slow", "late")}
    assert [records[n]["status"] for n in ("quick", "slow", "late")] == ["done", "stopped at the budget", "skipped"]
    assert records["slow"]["commands"] == ["python sweep.py +exp=x"] and records["slow"]["wall_s"] >= 3
    assert records["quick"]["code"]["tree_sha256"] and records["quick"]["device"] and records["quick"]["budget_s"] == 4
    with tarfile.open(out / "full" / "quick.tar.gz") as tar:
        assert set(tar.getnames()) == {"quick/run/metrics.json", "quick/repro.json", "quick/call.log.tail"}
    assert call.main([*args, "full/quick"]) == 0
    again = json.loads((root / "full" / "quick" / "repro.json").read_text())
    assert len(again["earlier_calls"]) == 1 and again["wall_total_s"] >= again["wall_s"]
    with pytest.raises(SystemExit):
        call.main([*args, "full/nope"])


@pytest.mark.slow
def test_a_real_sweep_stopped_by_the_budget_resumes_from_its_tarball_on_a_fresh_root(tmp_path: Path) -> None:
    knobs = {"SEEDS": "0", "JOBS": "1", "OVERRIDES": " ".join([*SMOKE, "logger=none", "sweep.values=[1,2,4]"])}
    first, second = tmp_path / "first", tmp_path / "second"
    run = lambda root, *budget: subprocess.run(  # noqa: E731
        [sys.executable, "repro/call.py", *budget, "--root", str(root), "--out", str(root / "out"),
         "mini/lora_vs_subspace"], cwd=REPO, env={**os.environ, **knobs}, capture_output=True, text=True, timeout=600)
    run(first, "--budget", "25")  # stops it somewhere: before, during or (on a fast machine) after the runs
    record = json.loads((first / "mini" / "lora_vs_subspace" / "repro.json").read_text())
    assert record["status"] in ("done", "stopped at the budget") and record["knobs"]["SEEDS"] == "0"
    (second / "mini").mkdir(parents=True)
    with tarfile.open(first / "out" / "mini" / "lora_vs_subspace.tar.gz") as tar:
        assert not [n for n in tar.getnames() if n.endswith(".ckpt")]
        tar.extractall(second / "mini", filter="data")  # a fresh machine gets only the tarball
    sweep = second / "mini" / "lora_vs_subspace" / "lora"
    kept = {json.loads(p.read_text())["key"]: p.parent.name for p in sweep.glob("runs/*/sweep_run.json")
            if (p.parent / "metrics.json").is_file()}
    done = run(second)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads((sweep / "summary.json").read_text())
    assert summary["runs"]["done"] == summary["runs"]["planned"] == 4, "3 ranks × 1 seed + 1 baseline"
    rows = {r["key"]: r["run_dir"] for r in csv.DictReader((sweep / "results.csv").read_text().splitlines())}
    assert all(Path(rows[key]).name == folder for key, folder in kept.items()), "finished runs were not rerun"
    again = json.loads((second / "mini" / "lora_vs_subspace" / "repro.json").read_text())
    assert again["status"] == "done" and len(again["earlier_calls"]) == 1


def test_plan_counts_runs_and_steps_with_the_knobs_as_set(capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EPOCHS", "5")
    monkeypatch.setenv("SEEDS", "0,1")
    assert call.main(["--plan", "full/li_mnist"]) == 0
    rows = [line.split("|")[1:-1] for line in capsys.readouterr().out.splitlines()[2:-1]]
    cfg = compose_config(["+exp=li_mnist_lenet_shuffled_pixels"], Path("/unused"), fast=False)
    runs = {r[1].strip(): int(r[3]) for r in rows}
    assert runs["lenet_shuffled_pixels"] == (len(cfg.sweep["values"]) + 1) * 2, "values × 2 seeds + 2 baselines"
    assert {int(r[4].replace(",", "")) for r in rows} == {5 * 430}, "5 epochs of 55,000 digits at batch 128"


def test_pack_keeps_small_files_turns_curves_into_csv_and_keeps_exported_weights(tmp_path: Path) -> None:
    from torch.utils.tensorboard import SummaryWriter

    folder = tmp_path / "root" / "mini" / "reproject"
    run = folder / "first_d100" / "seed0"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text("seed: 0\n")
    (run / "metrics.json").write_text("{}")
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "last.ckpt").write_bytes(b"0" * 4096)
    torch.save({"w": torch.zeros(3)}, folder / "first_d100" / "theta_seed0.pt")
    writer = SummaryWriter(str(run / "tensorboard"))
    for step in range(5):
        writer.add_scalar("val/acc", step / 4, step)
    writer.close()
    (folder / "from_d100" / "runs" / "0" / "tensorboard").mkdir(parents=True)  # sweep runs: no curves packed
    (folder / "from_d100" / "summary.json").write_text("{}")
    tarball = call.pack(folder, folder.parent, tmp_path / "out.tar.gz")
    with tarfile.open(tarball) as tar:
        names = set(tar.getnames())
        rows = tar.extractfile("reproject/first_d100/seed0/scalars.csv").read().decode().splitlines()
    assert names == {"reproject/first_d100/seed0/.hydra/config.yaml", "reproject/first_d100/seed0/metrics.json",
                     "reproject/first_d100/seed0/scalars.csv", "reproject/first_d100/theta_seed0.pt",
                     "reproject/from_d100/summary.json"}
    assert rows[0] == "step,tag,value" and rows[-1] == "4,val/acc,1.0"


# ------------------------------------------------------------------------------------- every study at smoke size
def commands(script: str, root: Path) -> list[list[str]]:
    """The commands a result script runs (DRY=1), as argument lists."""
    out = bash(REPO / "repro" / f"{script}.sh", {"ROOT": str(root), "DRY": "1", "JOBS": "1", "SEEDS": "0",
                                                  "SNAPSHOTS": "0 2"})
    assert out.returncode == 0, out.stderr
    return [shlex.split(line[2:]) for line in out.stdout.splitlines() if line.startswith("+ python ")]


def execute(argv: list[str], extra: list[str]) -> None:
    """One printed command, in this process, at smoke size (sweeps: the smallest value of their grid, seed 0)."""
    if argv[1:3] == ["-m", "idlab.adapt.export"]:
        from idlab.adapt.export import main as export_main

        export_main(argv[3:])
        return
    entry, args = argv[1], argv[2:] + extra
    if entry == "sweep.py":
        _, hydra_args = split_sweep_overrides(args)
        values = compose_config([a for a in hydra_args if not a.startswith("hydra")], Path("/unused"),
                                fast=False).sweep["values"]
        GlobalHydra.instance().clear()
        assert sweep_main([*args, *SMOKE, "logger=none", f"sweep.values=[{min(values)}]"], CONFIG_DIR) == 0
        return
    assert entry == "train.py", argv
    run_dir = Path(next(a.split("=", 1)[1] for a in args if a.startswith("hydra.run.dir=")))
    overrides = [a for a in args if not a.startswith("hydra.")] + SMOKE
    cfg = compose_config(overrides, run_dir, fast=False)
    (run_dir / ".hydra").mkdir(parents=True, exist_ok=True)  # what train.py's Hydra writes
    OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml")
    train(cfg)


@pytest.fixture(scope="module")
def smoke_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every result script of both scales, run command by command at smoke size into one root."""
    root = tmp_path_factory.mktemp("smoke")
    data = write_mnist(tmp_path_factory.mktemp("mnist_gz"), n_train=400, gz_only=True)  # as the shared .gz folder
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("IDLAB_DATA_DIR", str(data))
        torch.set_num_threads(1)
        for script in SCRIPTS:  # the fake MNIST has 400 training digits: hold 100 out (li_mnist: 5,000)
            for argv in commands(script, root):
                execute(argv, ["data.val_size=100"] if script.startswith("full/") else [])
    return root


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS)
def test_every_study_runs_end_to_end(script: str, smoke_root: Path) -> None:
    folder = smoke_root / script
    plans = [p.parent for p in folder.rglob("plan.json") if "runs" not in p.relative_to(folder).parts]
    seeds = list(folder.rglob("seed*/metrics.json"))
    assert plans or seeds, f"{script} wrote no sweep and no run"
    for sweep_dir in plans:
        summary = json.loads((sweep_dir / "summary.json").read_text())
        assert summary["runs"]["done"] == summary["runs"]["planned"] >= 1, (sweep_dir, summary["runs"])
        assert summary["points"] and summary["points"][0]["n"] == 1
    if script.startswith("full/"):
        cfg = OmegaConf.load(next(folder.rglob(".hydra/config.yaml")))
        assert cfg.data._target_ == "idlab.data.MNIST", "full-scale studies read the real MNIST files"


@pytest.mark.slow
def test_results_of_the_smoke_root_fill_every_section_from_the_runs(smoke_root: Path, tmp_path: Path) -> None:
    from repro.results import main

    doc = tmp_path / "results.md"
    main(["--root", str(smoke_root), "--doc", str(doc), "--figures", str(tmp_path / "figures")])
    text = doc.read_text()
    lenet = json.loads((smoke_root / "full" / "li_mnist" / "lenet" / "summary.json").read_text())
    row = next(line for line in text.splitlines() if line.startswith("| LeNet: baseline test accuracy"))
    assert f"{lenet['baseline']['value']:.3f}" in row.split("|")[4], "the full individual column is that sweep's"
    for name in ("li_mnist.png", "li_mnist_grid.png", "memorisation.png", "lora_vs_subspace.png", "reproject.png",
                 "grokking_id.png", "finetune_id.png"):
        assert (tmp_path / "figures" / name).is_file() and f"]({Path('figures') / name})" in text
    for script in SCRIPTS:
        assert f"`bash repro/{script}.sh`; " in text, f"{script}: no record of its runs in results.md"
    assert NOT_RUN not in text.split("## 1. ")[1].split("## 1b.")[0], "result 1 is filled at both scales"


# --------------------------------------------------------------------------------------- docs/results.md is data
def write_sweep(folder: Path, points: dict[float, list[float | None]], baseline: list[float] | float,
                threshold: float = 0.9, metric: str = "test/acc", results_version: int | None = None) -> None:
    """A sweep folder as sweep.py leaves it (plan.json, runs/N/{sweep_run,metrics}.json), then its report;
    a None metric is a seed that never finished; `results_version` is the code version the runs record (None: none,
    as runs from before version 2)."""
    measured = isinstance(baseline, list)
    seeds = list(range(len(next(iter(points.values())))))
    spec = {"param": "adapt.d", "values": sorted(points), "seeds": seeds, "metric": metric, "threshold": threshold,
            "baseline": "full" if measured else baseline}
    runs, index = [], 0
    cells = [("baseline", None, s, b) for s, b in enumerate(baseline)] if measured else []
    cells += [("point", v, s, m) for v, ms in points.items() for s, m in enumerate(ms)]
    for role, value, seed, result in cells:
        key = f"k{index}"
        runs.append({"role": role, "value": value, "seed": seed, "overrides": [], "key": key})
        if result is not None:
            run = folder / "runs" / str(index)
            run.mkdir(parents=True)
            (run / "sweep_run.json").write_text(json.dumps({"key": key, "status": "done", "started": index}))
            code = {} if results_version is None else {"code": {"results_version": results_version,
                                                                 "source_hash": "0123456789abcdef"}}
            (run / "metrics.json").write_text(json.dumps({metric: result, "params/total": 1000.0, **code}))
        index += 1
    (folder / "plan.json").write_text(json.dumps({"spec": spec, "runs": runs, "search": {"kind": "grid"}}))
    report(folder)


def cells_of(text: str, first_cell: str) -> list[str]:
    """The cells of the table row that starts with `first_cell`."""
    line = next(line for line in text.splitlines() if line.startswith(f"| {first_cell}"))
    return [c.strip() for c in line.strip().strip("|").split("|")]


def test_an_empty_root_renders_no_number_and_no_verdict(tmp_path: Path) -> None:
    text = render(tmp_path / "empty", tmp_path / "figures", tmp_path / "results.md")
    for verdict in ("**holds**", "**does not hold**", "undetermined (", "undetermined at", "wall time", "device "):
        assert verdict not in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| quantity")
            and not line.startswith("| claim")]
    assert rows
    for line in rows:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        ours = cells[2:] if len(cells) == 5 else cells[1:]
        assert all(c.startswith(NOT_RUN) for c in ours), line
    assert "![" not in text
    for script in SCRIPTS:
        assert f"{NOT_RUN} (`bash repro/{script}.sh`)" in text or script.split("/")[1] in ("grokking_id",
                                                                                             "finetune_id")


def test_claims_are_evaluated_on_the_runs_against_both_baselines(tmp_path: Path) -> None:
    root = tmp_path / "root"
    # FC reaches the individual target (0.9 × 0.95 = 0.855) at 200 and the global 0.9 only at 400;
    # LeNet needs 400 and 800: so "LeNet below FC" does not hold in either full column.
    write_sweep(root / "full" / "li_mnist" / "fc", {100: [0.80, 0.80], 200: [0.86, 0.87], 400: [0.91, 0.92],
                                                    800: [0.93, 0.93]}, [0.95, 0.95])
    write_sweep(root / "full" / "li_mnist" / "lenet", {100: [0.70, 0.70], 200: [0.80, 0.80], 400: [0.86, 0.87],
                                                       800: [0.91, 0.92]}, [0.95, 0.95])
    # mini: LeNet reaches its target at 100, FC at 400 — the claim holds there; one FC seed at 800 never finished.
    write_sweep(root / "mini" / "li_mnist" / "fc", {100: [0.5, 0.5], 200: [0.6, 0.6], 400: [0.9, 0.9],
                                                    800: [0.95, None]}, [0.95, 0.95])
    write_sweep(root / "mini" / "li_mnist" / "lenet", {100: [0.9, 0.9], 200: [0.92, 0.93]}, [0.96, 0.96])
    text = render(root, tmp_path / "figures", tmp_path / "results.md")
    fc = cells_of(text, "FC 784-200-200-10: d_int90")
    assert fc[2].startswith("**400**") and fc[3].startswith("**200**") and fc[4].startswith("**400**")
    assert "incomplete: 800: 1 of 2 seeds" not in fc[4], "a gap above d_int90 does not change it"
    claim = cells_of(text, "LeNet's d_int90 is below FC's")
    assert claim[1].startswith("**does not hold** — fc 400; lenet 800")
    assert claim[2].startswith("**does not hold** — fc 200; lenet 400")
    assert claim[3].startswith("**holds** — fc 400; lenet 100")
    assert cells_of(text, "shuffling pixels raises")[1] == f"{NOT_RUN} (lenet_shuffled_pixels)"
    # A seed missing at or below d_int90 leaves it open: the cell says so and the claim is undetermined.
    write_sweep(root / "full" / "li_mnist" / "fc_shuffled_pixels", {100: [0.8, 0.8], 200: [0.91, None]}, [0.95, 0.95])
    text = render(root, tmp_path / "figures", tmp_path / "results.md")
    assert "incomplete: 200: 1 of 2 seeds" in cells_of(text, "FC, shuffled pixels: d_int90")[2]
    assert cells_of(text, "shuffling pixels moves FC's")[1].startswith("undetermined (incomplete: ")


def test_a_claim_the_grid_cannot_decide_is_undetermined(tmp_path: Path) -> None:
    root = tmp_path / "root"
    write_sweep(root / "mini" / "li_mnist" / "fc", {100: [0.5], 500: [0.95]}, [1.0])
    write_sweep(root / "mini" / "li_mnist" / "lenet", {200: [0.5], 500: [0.95]}, [1.0])
    text = render(root, tmp_path / "figures", tmp_path / "results.md")
    # Both reach at 500: FC's d_int90 lies in (100, 500], LeNet's in (200, 500] — either could be smaller.
    assert cells_of(text, "LeNet's d_int90 is below FC's")[3].startswith("undetermined at this grid's resolution")


def test_results_made_under_an_earlier_results_version_are_marked_stale(tmp_path: Path) -> None:
    from idlab import RESULTS_VERSION

    root = tmp_path / "root"
    write_sweep(root / "full" / "li_mnist" / "fc", {100: [0.5], 500: [0.95]}, [1.0], results_version=RESULTS_VERSION)
    write_sweep(root / "mini" / "li_mnist" / "fc", {100: [0.5], 500: [0.95]}, [1.0])  # recorded no code version
    text = render(root, tmp_path / "figures", tmp_path / "results.md")
    section = text.split("## 1. ", 1)[1].split("\n## ", 1)[0]
    assert f"**Stale (mini scale): 3 of 3 runs predate results version {RESULTS_VERSION}**" in section
    assert "Stale (full scale)" not in section
    assert f"results version {RESULTS_VERSION}, idlab sources 0123456789abcdef (3 runs)" in section


def test_what_the_rerun_moved_is_read_from_both_sets_of_runs(tmp_path: Path) -> None:
    from idlab import RESULTS_VERSION

    now, before = tmp_path / "root", tmp_path / "previous"
    write_sweep(before / "mini" / "li_mnist" / "fc", {100: [0.5], 500: [0.95], 1000: [0.96]}, [1.0])
    write_sweep(before / "mini" / "li_mnist" / "lenet", {100: [0.95]}, [1.0])
    write_sweep(now / "mini" / "li_mnist" / "fc", {100: [0.5], 500: [0.85], 1000: [0.95]}, [1.0],
                results_version=RESULTS_VERSION)
    # a sweep renamed since: memorisation/real_labels is now real_labels_n1000; real_labels_n4000 kept its name
    write_sweep(before / "mini" / "memorisation" / "real_labels", {100: [0.5], 500: [0.95]}, [1.0])
    write_sweep(before / "mini" / "memorisation" / "real_labels_n4000", {100: [0.5], 500: [0.95]}, [1.0])
    for name in ("real_labels_n1000", "real_labels_n4000"):
        write_sweep(now / "mini" / "memorisation" / name, {100: [0.95], 500: [0.96]}, [1.0],
                    results_version=RESULTS_VERSION)
    text = render(now, tmp_path / "figures", tmp_path / "results.md", previous=before)
    assert cells_of(text, "mini/li_mnist/fc") == ["mini/li_mnist/fc", "500", "1,000", "1.000", "1.000", "×2"]
    assert cells_of(text, "mini/memorisation/real_labels") == [
        "mini/memorisation/real_labels (now memorisation/real_labels_n1000)", "500", "100", "1.000", "1.000", "×0.2"]
    assert cells_of(text, "mini/memorisation/real_labels_n4000")[0] == "mini/memorisation/real_labels_n4000"
    assert cells_of(text, "mini/li_mnist/lenet")[-1] == "not rerun yet"
    assert "What rerunning" not in render(now, tmp_path / "figures", tmp_path / "results.md")


def test_a_metric_that_collapses_at_large_d_bounds_the_d_int_only_up_to_its_peak(tmp_path: Path) -> None:
    root = tmp_path / "root"
    # FC rises to 0.80 at d = 1,000 and falls to chance at 5,000 (training failed there): d_int90 > 1,000 is all
    # the grid says. LeNet's slight dip (0.79 after 0.80) is noise, not a collapse: > 5,000.
    write_sweep(root / "mini" / "li_mnist" / "fc", {100: [0.5], 1000: [0.8], 5000: [0.1]}, [1.0])
    write_sweep(root / "mini" / "li_mnist" / "lenet", {100: [0.5], 1000: [0.8], 5000: [0.79]}, [1.0])
    text = render(root, tmp_path / "figures", tmp_path / "results.md")
    assert cells_of(text, "FC 784-200-200-10: d_int90")[4] == (
        "> 1,000 (not reached: the metric peaks at 0.800 at 1,000 and falls to 0.100 by 5,000, so the larger "
        "values failed to train and bound nothing)")
    assert cells_of(text, "LeNet: d_int90")[4] == "> 5,000 (not reached)"
    # FC's d_int90 lies above 1,000, LeNet's above 5,000: the comparison is open, not "LeNet's is larger".
    assert cells_of(text, "LeNet's d_int90 is below FC's")[3].startswith("undetermined")


def test_runs_a_rerun_superseded_or_set_aside_do_not_make_a_result_stale(tmp_path: Path) -> None:
    from idlab import RESULTS_VERSION
    from repro.results import code_versions, stale_runs

    result = tmp_path / "root" / "mini" / "finetune_id"
    write_sweep(result / "from_step0", {100: [0.5], 500: [0.95]}, 1.0, results_version=RESULTS_VERSION)
    # what a rerun under the new version leaves beside the runs it aggregates: the old runs' folders ...
    old = result / "from_step0" / "runs" / "99"
    old.mkdir(parents=True)
    (old / "metrics.json").write_text(json.dumps({"test/acc": 0.4}))
    # ... and the pretraining train_once set aside (no code version: made before version 2)
    aside = result / "pretrain_mul.unfinished.1796185483"
    aside.mkdir()
    (aside / "metrics.json").write_text(json.dumps({"train/acc": 1.0}))
    assert code_versions(result) == {(RESULTS_VERSION, "0123456789abcdef"): 2}
    assert stale_runs(result) is None
    kept = result / "pretrain_mul"  # a finished run outside any sweep still counts, stale when it is old
    kept.mkdir()
    (kept / "metrics.json").write_text(json.dumps({"train/acc": 1.0}))
    assert stale_runs(result) == (1, 3)


def test_memorisation_at_two_step_sizes_is_read_per_step_size(tmp_path: Path) -> None:
    root = tmp_path / "root"
    memorisation = root / "full" / "memorisation"

    def sweep(name: str, points: dict[float, list[float]], lr: float) -> None:
        write_sweep(memorisation / name, points, [1.0], threshold=0.89, metric="train/acc")
        cfg = compose_config(["+exp=li_mnist_shuffled_labels", f"optim.optimizer.lr={lr}"], tmp_path, fast=False)
        for run in (memorisation / name / "runs").iterdir():
            (run / ".hydra").mkdir()
            OmegaConf.save(cfg, run / ".hydra" / "config.yaml")
    # Adam 1e-2 collapses above 2,000 (never reaches 0.89); 1e-3 memorises at 8,000. Real labels: 1,000 at both.
    sweep("shuffled_labels_n10000", {1000: [0.5], 2000: [0.8], 8000: [0.1]}, 1e-2)
    sweep("real_labels_n10000", {1000: [0.95], 2000: [1.0], 8000: [1.0]}, 1e-2)
    sweep("shuffled_labels_n10000_lr1e-3", {1000: [0.2], 5000: [0.5], 8000: [0.95]}, 1e-3)
    sweep("real_labels_n10000_lr1e-3", {1000: [0.9], 2000: [1.0], 8000: [1.0]}, 1e-3)
    text = render(root, tmp_path / "figures", tmp_path / "results.md")
    shuffled = cells_of(text, "100 % shuffled labels")[2].split("<br>")
    assert shuffled[0].startswith("> 2,000 (not reached: the metric peaks at 0.800") and \
        shuffled[0].endswith("at 10,000 labels, Adam 1e-2")
    assert shuffled[1] == "**8,000** (95 % CI 8,000–8,000) at 10,000 labels, Adam 1e-3"
    # the claim reads the step size that memorised, not the one that failed to train
    assert cells_of(text, "at the largest label count")[1] == "**holds** — shuffled 8,000; real 1,000"
    # one label count at each step size: nothing to say about the gap growing with the count
    assert cells_of(text, "the shuffled/real gap grows")[1].startswith(NOT_RUN)


def test_a_call_without_the_joblib_launcher_stops_before_any_script(tmp_path: Path) -> None:
    assert call.missing_launcher({"JOBS": "4", "PYTHON": sys.executable}) is None  # installed here
    assert call.missing_launcher({"JOBS": "1", "PYTHON": "/bin/false"}) is None  # in-process: no launcher needed
    message = call.missing_launcher({"JOBS": "4", "PYTHON": "/bin/false"})
    assert message is not None and "hydra-joblib-launcher" in message and "JOBS=1" in message
    env = {**os.environ, "JOBS": "4", "PYTHON": "/bin/false"}
    done = subprocess.run([sys.executable, str(REPO / "repro" / "call.py"), "--budget", "5", "--root",
                           str(tmp_path / "root"), "--out", str(tmp_path / "out"), "mini/li_mnist"],
                          cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == 2 and "joblib launcher" in done.stderr
    assert not (tmp_path / "root").exists() and not (tmp_path / "out").exists()
