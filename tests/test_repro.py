"""repro/: every reproduction command plans and composes, the finetune chain and export run a few CPU steps, the
runner shares/stops steps, packing keeps only small files, and figures + results.md come from real sweep folders."""
from __future__ import annotations

import json
import shutil
import sys
import tarfile
import time
from pathlib import Path

import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import OmegaConf

from conftest import compose_config, model_checkpoint
from idlab.adapt.export import export_run, load_run, plain_state_dict
from idlab.adapt.init_from import load_base_weights, read_state_dict
from idlab.run import train
from idlab.sweep.driver import run_sweep

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from repro import engine as engine_mod  # noqa: E402
from repro.engine import Engine  # noqa: E402
from repro.pack import pack  # noqa: E402
from repro.registry import BUILDERS, GPU_MINUTES, ISSUE_ITEM, build  # noqa: E402
from repro.results_md import render  # noqa: E402
from repro.steps import Settings, Step  # noqa: E402

CONFIG_DIR = REPO / "configs"
PLACEHOLDER = Path("/repro-root")
OWNED_BY_SWEEP = ("sweep.values=", "sweep.seeds=", "sweep.dir=")


def all_steps(root: Path) -> list[Step]:
    """Every step of every reproduction (GPU scale), planned under `root`."""
    settings = Settings(root=root, jobs=16)
    return [step for name in BUILDERS for step in build(name, settings, extended=True).steps()]


def distinct(kind: str) -> list[str]:
    """Labels of the steps of one kind whose commands differ in more than values, seeds, folders or the seed."""
    seen, labels = set(), []
    for step in all_steps(PLACEHOLDER):
        if step.kind != kind:
            continue
        owned = (*OWNED_BY_SWEEP, "seed=", "hydra.run.dir=", "model.width=", "model.depth=", "adapt.d=")
        head = tuple(a for a in step.args if not a.startswith(owned)
                     and "snapshots/step" not in a and "theta_seed" not in a)
        if head not in seen:
            seen.add(head)
            labels.append(step.label)
    return labels


def step_named(label: str, root: Path) -> Step:
    """The step with this label, planned under `root`."""
    return next(s for s in all_steps(root) if s.label == label)


def fake_inputs(root: Path) -> None:
    """The files later stages read (θ_A exports, pretraining snapshots), as real state dicts of the right models."""
    for first in ("first_d100", "first_d300"):
        cfg = compose_config(["+exp=li_mnist_lenet", "data=mnist_mini"], root / "x", fast=False)
        net = instantiate(cfg.model, spec=instantiate(cfg.data).spec)
        for seed in (0, 1, 2):
            (root / "reproject" / first).mkdir(parents=True, exist_ok=True)
            torch.save(net.state_dict(), root / "reproject" / first / f"theta_seed{seed}.pt")
    snapshots = root / "finetune_id" / "pretrain_mul" / "snapshots"
    for step in (0, 1000, 2000, 4000, 8000):
        model_checkpoint(["+exp=math_equations"], snapshots / f"step{step:06d}.ckpt")


def test_plans_are_consistent_across_results() -> None:
    steps = all_steps(PLACEHOLDER)
    by_key: dict[str, Step] = {}
    for step in steps:
        if step.key in by_key:  # the runner runs a shared step once: it must be the very same command
            assert by_key[step.key].args == step.args, f"{step.key} is planned with two different commands"
        by_key[step.key] = step
        assert step.folder is None or PLACEHOLDER in step.folder.parents
    assert set(GPU_MINUTES) == set(BUILDERS) == set(ISSUE_ITEM)
    assert set(ISSUE_ITEM.values()) == {1, 2, 3, 4, 5, 6}, "every result of the issue has a reproduction"
    for name in BUILDERS:
        assert (REPO / "repro" / f"{name}.sh").is_file(), f"repro/{name}.sh is missing"


@pytest.fixture(scope="module")
def planned_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A root holding the inputs of later stages (dry runs write nothing, so the tests can share it)."""
    root = tmp_path_factory.mktemp("repro_root")
    fake_inputs(root)
    return root


@pytest.mark.parametrize("label", [*distinct("sweep"), "li_mnist_grid/w50_l1"])  # + the grid's smallest D
def test_every_sweep_command_plans_and_passes_the_model_check(label: str, planned_root: Path) -> None:
    step = step_named(label, planned_root)
    values = next(a for a in step.args if a.startswith("sweep.values="))
    numbers = json.loads(values.split("=", 1)[1])
    GlobalHydra.instance().clear()
    # The extremes are what the pre-launch check builds; one seed composes the same configs as three.
    summary = run_sweep(CONFIG_DIR, [*step.args, "sweep.seeds=[0]", f"sweep.values=[{min(numbers)},{max(numbers)}]"],
                        dry_run=True)
    assert summary["runs"]["pending"] == summary["runs"]["planned"] >= 2
    assert not (step.folder / "plan.json").exists(), "a dry run writes nothing"


@pytest.mark.parametrize("label", distinct("train"))
def test_every_train_command_composes(label: str, tmp_path: Path) -> None:
    step = step_named(label, tmp_path)
    cfg = compose_config([a for a in step.args if not a.startswith("hydra.")], tmp_path / "run", fast=False)
    instantiate(cfg.adapt)
    if "grokking" in label:
        assert "activation_id" in cfg.callbacks and cfg.trainer.max_steps in (8000, 20000)
        assert cfg.optim.optimizer.weight_decay in (0.0, 1.0) and cfg.data.op == "div"
    if "pretrain" in label:
        assert list(cfg.callbacks.snapshots.steps) == [0, 1000, 2000, 4000, 8000] and cfg.data.op == "mul"


def test_finetune_chain_runs_from_a_pretraining_snapshot(make_cfg) -> None:
    short = ["trainer.max_steps=2", "trainer.check_val_every_n_epoch=1", "trainer.limit_val_batches=1",
             "trainer.limit_test_batches=1", "test=false"]
    pretrain = make_cfg("+exp=math_equations", "data.op=mul", "data.train_frac=0.5", "callbacks=snapshots",
                        "callbacks.snapshots.steps=[1,2]", *short, run="pretrain")
    train(pretrain)
    snapshots = sorted((Path(pretrain.paths.output_dir) / "snapshots").glob("*.ckpt"))
    assert [p.name for p in snapshots] == ["step000001.ckpt", "step000002.ckpt"]
    first, second = (read_state_dict(p) for p in snapshots)
    assert any(not torch.equal(first[k], second[k]) for k in first), "snapshots are taken at different steps"
    cfg = make_cfg("+exp=finetune_mod97", f"pretrained={snapshots[0]}", "adapt.d=50", "seed=3", *short, run="ft")
    metrics = train(cfg)
    assert metrics["params/trainable"] == 50 and cfg.adapt.seed == 3 and cfg.data.op == "div"
    after = torch.load(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert torch.equal(after["net.model.blocks.0.attn.q.weight"], first["blocks.0.attn.q.weight"])  # θ0 = snapshot


def test_export_of_a_subspace_run_reproduces_its_outputs_in_the_plain_architecture(make_cfg, tmp_path: Path) -> None:
    cfg = make_cfg("adapt=subspace", "adapt.d=20", "adapt.projection=dense", "model.width=16", "test=false")
    train(cfg)
    run = Path(cfg.paths.output_dir)
    (run / ".hydra").mkdir()
    OmegaConf.save(cfg, run / ".hydra" / "config.yaml")  # as train.py's Hydra does
    trained = load_run(run, "last").net
    assert trained.theta_d.abs().sum() > 0, "θ_d moved, so θ0 + P·θ_d differs from θ0"
    exported = export_run(run, "last", tmp_path / "theta.pt")
    plain = instantiate(cfg.model, spec=instantiate(cfg.data).spec)
    load_base_weights(plain, exported)  # exactly what adapt.init_from does
    x = torch.rand(8, 1, 28, 28)
    trained.eval(), plain.eval()
    with torch.no_grad():
        assert torch.equal(plain(x), trained(x))
    assert not torch.equal(plain.blocks[0][0].weight, trained.get_base_model().blocks[0][0].weight)


def test_export_of_a_full_run_is_its_checkpoint_and_bad_input_is_named(make_cfg, tmp_path: Path) -> None:
    cfg = make_cfg("model.width=8", "test=false")
    train(cfg)
    run = Path(cfg.paths.output_dir)
    (run / ".hydra").mkdir()
    OmegaConf.save(cfg, run / ".hydra" / "config.yaml")
    state = read_state_dict(export_run(run, "best"))
    ckpt = read_state_dict(run / "checkpoints" / "best.ckpt")
    assert state.keys() == ckpt.keys() and all(torch.equal(state[k], ckpt[k]) for k in state)
    assert (run / "merged.pt").is_file() and not list(run.glob(".*.tmp"))
    with pytest.raises(FileNotFoundError, match="checkpoint 'nope' not found.*--checkpoint last, best"):
        export_run(run, "nope")
    assert plain_state_dict(torch.nn.Linear(2, 3)).keys() == {"weight", "bias"}


def test_runner_shares_a_step_between_results_and_stops_at_the_deadline(monkeypatch, tmp_path: Path) -> None:
    calls = []

    def argv(step: Step) -> list[str]:
        calls.append(step.label)
        seconds = 30 if "slow" in step.label else 0
        return [sys.executable, "-c", f"import time; time.sleep({seconds})"]
    monkeypatch.setattr(Step, "argv", argv)
    monkeypatch.setattr(engine_mod, "GRACE_S", 2.0)
    shared = Step("a/shared", "train", (), folder=tmp_path / "shared")
    from repro.steps import Result
    results = [Result("a", "A", ((shared,), (Step("a/slow", "train", ()),)), ""),
               Result("b", "B", ((shared,), (Step("b/after", "train", ()),)), "")]
    start = time.monotonic()
    done = Engine(jobs=2, log_dir=tmp_path / "logs", budget_s=2).run(results)
    assert calls.count("a/shared") == 1, "a step two results ask for runs once"
    assert time.monotonic() - start < 20, "the slow step was stopped at the deadline"
    status = {o.label: o.status for outcomes, _, _ in done.values() for o in outcomes}
    assert status == {"a/shared": "done", "a/slow": "timeout", "b/after": "done"}


def test_a_finished_train_step_is_kept_by_a_later_call(monkeypatch, tmp_path: Path) -> None:
    calls = []
    monkeypatch.setattr(Step, "argv", lambda step: calls.append(step.label) or [sys.executable, "-c", "pass"])
    finished, fresh = tmp_path / "finished", tmp_path / "fresh"
    finished.mkdir()
    (finished / "metrics.json").write_text("{}")
    from repro.steps import Result
    stages = ((Step("r/finished", "train", (), folder=finished), Step("r/fresh", "train", (), folder=fresh)),)
    done = Engine(jobs=2, log_dir=tmp_path / "logs").run([Result("r", "R", stages, "")])
    assert calls == ["r/fresh"], "a run folder with metrics.json is not trained again (its snapshots stay)"
    assert [o.status for o in done["r"][0]] == ["kept", "done"]


def test_pack_keeps_small_result_files_and_turns_tensorboard_into_csv(tmp_path: Path) -> None:
    from torch.utils.tensorboard import SummaryWriter

    run = tmp_path / "root" / "grokking_id" / "frac0.5_wd1" / "seed0"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text("seed: 0\n")
    (run / "metrics.json").write_text("{}")
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "last.ckpt").write_bytes(b"0" * 4096)
    writer = SummaryWriter(str(run / "tensorboard"))
    for step in range(5):
        writer.add_scalar("val/acc", step / 4, step)
    writer.close()
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "grokking_id__x.log").write_text("\n".join(f"line {i}" for i in range(500)))
    out = pack([tmp_path / "root" / "grokking_id"], tmp_path / "root", tmp_path / "out" / "g.tar.gz", tmp_path / "logs")
    with tarfile.open(out) as tar:
        names = set(tar.getnames())
        scalars = tar.extractfile("grokking_id/frac0.5_wd1/seed0/scalars.csv").read().decode().splitlines()
        tail = tar.extractfile("_logs/grokking_id__x.tail.txt").read().decode()
    assert names == {"grokking_id/frac0.5_wd1/seed0/.hydra/config.yaml", "grokking_id/frac0.5_wd1/seed0/metrics.json",
                     "grokking_id/frac0.5_wd1/seed0/scalars.csv", "_logs/grokking_id__x.tail.txt"}
    assert scalars[0] == "step,tag,value" and scalars[-1] == "4,val/acc,1.0"
    assert "line 499" in tail and "line 300" not in tail


TINY_SWEEP = ["trainer=cpu", "trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
              "trainer.limit_test_batches=1", "trainer.num_sanity_val_steps=0", "++callbacks.progress_bar=null",
              "+trainer.enable_progress_bar=false", "logger=none", "~callbacks.lr_monitor", "data=mnist",
              "data.val_size=50", "data.on_device=false", "model.width=8", "model.depth=1", "adapt=subspace",
              "sweep.param=adapt.d", "sweep.values=[8,64]", "sweep.seeds=[0,1]", "sweep.baseline=full"]


@pytest.fixture(scope="module")
def tiny_sweep(mnist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real sweep (subspace d ∈ {8, 64} × 2 seeds + full baselines) on the small MNIST fixture, 2 batches a run."""
    root = tmp_path_factory.mktemp("tiny_sweep_root")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("IDLAB_DATA_DIR", str(mnist_dir))
        GlobalHydra.instance().clear()
        run_sweep(CONFIG_DIR, [*TINY_SWEEP, f"sweep.dir={root / 'li_mnist' / 'fc'}"])
    return root


def test_a_sweep_stopped_before_writing_its_plan_is_recovered(tiny_sweep: Path, tmp_path: Path, mnist_dir: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from idlab.sweep.report import report
    from repro.run import recover_plan

    monkeypatch.setenv("IDLAB_DATA_DIR", str(mnist_dir))
    original = json.loads((tiny_sweep / "li_mnist" / "fc" / "summary.json").read_text())
    killed = tmp_path / "killed"
    shutil.copytree(tiny_sweep / "li_mnist" / "fc", killed)
    (killed / "plan.json").unlink()  # sweep.py writes plan.json only after its last run
    recover_plan(Step("x", "sweep", (*TINY_SWEEP, f"sweep.dir={killed}"), folder=killed))
    summary = report(killed)
    assert summary["runs"] == original["runs"] and summary["points"] == original["points"]
    assert summary["d_int90"]["value"] == original["d_int90"]["value"]


def test_figures_and_results_come_from_the_run_folders(tiny_sweep: Path, tmp_path: Path) -> None:
    from repro.figures import regenerate

    summary = json.loads((tiny_sweep / "li_mnist" / "fc" / "summary.json").read_text())
    doc = tmp_path / "docs" / "results.md"
    written = regenerate(tiny_sweep, tmp_path / "docs" / "figures", doc)
    names = {p.name for p in written}
    assert {"li_mnist_fc_vs_lenet.png", "li_mnist_fc.png", "li_mnist_grid.png", "results.md"} <= names
    assert "grokking_id.png" not in names and "memorisation.png" not in names, "no data, no figure"
    text = doc.read_text()
    row = next(line for line in text.splitlines() if line.startswith("| FC 784-200-200-10 d_int90"))
    value = summary["d_int90"]["value"]
    expected = f"**{value:g}**" if value is not None else "not reached"
    assert expected in row and f"{summary['baseline']['value']:.3f}" in row
    assert "| LeNet d_int90 | 290 | not yet run |" in text
    assert "![li_mnist_fc_vs_lenet.png](figures/li_mnist_fc_vs_lenet.png)" in text


def test_results_skeleton_has_no_numbers_of_ours_without_runs(tmp_path: Path) -> None:
    text = render(tmp_path / "empty", tmp_path / "figures", tmp_path / "results.md")
    for name in BUILDERS:
        assert f"`bash repro/{name}.sh`" in text
    assert text.count("not yet run") >= 2 * len(BUILDERS)
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("| ") and len(cells) >= 3 and "d_int90" in cells[0]:
            assert cells[2] in ("not yet run", "n/a"), line  # the "ours" column of an empty root
    assert "![" not in text


def test_run_cli_refuses_bad_input_and_prints_commands(capsys) -> None:
    from repro.run import main

    with pytest.raises(SystemExit):
        main(["no_such_result"])
    with pytest.raises(SystemExit):
        main(["li_mnist", "--jobs", "0"])
    assert main(["grokking_id", "finetune_id", "--dry-run", "--root", "/x"]) == 0
    out = capsys.readouterr().out
    assert out.count("python train.py +exp=math_equations_id") == 9
    assert out.count("python sweep.py +exp=finetune_mod97 pretrained=/x/finetune_id/pretrain_mul/snapshots/") == 5
