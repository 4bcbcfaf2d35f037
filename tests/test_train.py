"""End-to-end runs on CPU: every data × model pair, the default command, determinism, resume, bad input."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import idlab

from conftest import REPO, checkpoint_losses
from idlab.models import IncompatibleDataError
from idlab.run import train

IMAGE_MODELS = {"fc": ["model.width=32"], "lenet": [],
                "resnet": ["model.variant=resnet20", "model.width=4"]}


def image_data(name: str, mnist_dir: Path, cifar_dir) -> list[str]:
    """Overrides pointing a torchvision dataset at the small on-disk fixture."""
    if name == "mnist":
        return ["data=mnist", f"data.data_dir={mnist_dir}", "data.val_size=50"]
    if name.startswith("cifar"):
        n = int(name[5:])
        return [f"data={name}", f"data.data_dir={cifar_dir(n)}", "data.val_size=20"]
    return [f"data={name}"]


@pytest.mark.parametrize("data", ["mnist_mini", "mnist", "cifar10", "cifar100"])
@pytest.mark.parametrize("model", sorted(IMAGE_MODELS))
def test_every_image_pair_trains(data: str, model: str, make_cfg, mnist_dir, cifar_dir) -> None:
    cfg = make_cfg(*image_data(data, mnist_dir, cifar_dir), f"model={model}", *IMAGE_MODELS[model],
                   "data.batch_size=16", "trainer.limit_train_batches=2")
    metrics = train(cfg)
    assert metrics["global_step"] == 2 and math.isfinite(metrics["train/loss"])
    saved = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    assert saved["test/acc"] == metrics["test/acc"] and 0 <= saved["test/acc"] <= 1


def test_modular_transformer_trains(make_cfg) -> None:
    metrics = train(make_cfg("+exp=math_equations", "trainer.max_epochs=-1", "trainer.max_steps=3", "data.p=23"))
    assert metrics["global_step"] == 3 and metrics["params/trainable"] == metrics["params/total"]


@pytest.mark.parametrize("data,model", [("modular", "fc"), ("modular", "lenet"), ("mnist_mini", "transformer")])
def test_incompatible_pairs_are_named(data: str, model: str, make_cfg) -> None:
    with pytest.raises(IncompatibleDataError, match=f"model={model}.*data={data}"):
        train(make_cfg(f"data={data}", f"model={model}"))


def test_default_command_runs_end_to_end(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "train.py", f"hydra.run.dir={tmp_path}/run", "trainer=cpu"],
                            cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["test/acc"] > 0.85, "FC on 4,000 real MNIST digits for 10 epochs should exceed 85%"
    assert (tmp_path / "run" / ".hydra" / "config.yaml").exists()
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").exists()
    assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))
    code = metrics["code"]  # what code made the run: RESULTS_VERSION, sources hash, git commit + dirty flag
    assert code["results_version"] == idlab.RESULTS_VERSION and len(code["source_hash"]) == 16
    assert code["commit"] is None or len(code["commit"]) == 40


def test_same_seed_same_metrics(make_cfg) -> None:
    a = train(make_cfg("seed=3", "model.width=16", run="a"))
    b = train(make_cfg("seed=3", "model.width=16", run="b"))
    c = train(make_cfg("seed=4", "model.width=16", run="c"))
    assert a["val/loss"] == b["val/loss"] and a["test/acc"] == b["test/acc"]
    assert a["val/loss"] != c["val/loss"]


@pytest.mark.parametrize("extra", [["model=fc"], ["data=modular", "model=transformer", "data.p=23", "optim=adamw", "data.batch_size=64"]])
def test_resumed_run_equals_uninterrupted_run(make_cfg, extra: list[str]) -> None:
    common = [*extra, "trainer.limit_train_batches=3", "trainer.limit_val_batches=1", "test=false"]
    full = train(make_cfg(*common, "trainer.max_epochs=3", run="full"))
    train(make_cfg(*common, "trainer.max_epochs=2", run="killed"))
    last = Path(make_cfg(run="killed").paths.output_dir) / "checkpoints" / "last.ckpt"
    resumed = train(make_cfg(*common, "trainer.max_epochs=3", f"ckpt_path={last}", run="resumed"))
    assert resumed["global_step"] == full["global_step"] == 9
    for key in ("val/loss", "val/acc", "train/loss"):
        assert resumed[key] == full[key], key


@pytest.mark.parametrize("override,match", [
    ("optim.optimizer.lr=0", "optim.optimizer.lr=0"), ("optim.optimizer.lr=-1e-3", "lr=-0.001"),
    ("data.batch_size=0", "batch_size=0"), ("model.width=0", "model.width=0"),
    ("trainer.max_epochs=0", "max_epochs=0"), ("ckpt_path=/nope/last.ckpt", "/nope/last.ckpt"),
    ("ckpt_path=last", "last.ckpt"), ("data.shuffle_labels=1.5", "shuffle_labels=1.5"),
])
def test_bad_input_fails_before_training(override: str, match: str, make_cfg) -> None:
    cfg = make_cfg(override)
    with pytest.raises(ValueError, match=match.replace(".", r"\.")):
        train(cfg)
    assert not (Path(cfg.paths.output_dir) / "checkpoints").exists()


def test_weights_that_overflow_are_never_checkpointed_and_the_run_is_a_diverged_result(make_cfg) -> None:
    # Issue #11's reproduction: step 0's loss is finite, its update leaves weights of ~1e38 whose loss is inf.
    # The old guard read only step 0's loss and wrote (and named "last good") a checkpoint of those weights.
    cfg = make_cfg("optim=sgd", "optim.optimizer.lr=3.4e38", "data.batch_size=1", "++trainer.limit_train_batches=1",
                   "trainer.max_epochs=3")
    metrics = train(cfg)
    assert metrics["diverged"] is True and metrics["diverged_step"] == 1
    saved = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    assert saved["diverged"] is True and saved["chance/acc"] == 0.1
    assert not any(k.startswith(("val/", "test/")) for k in saved), "no good checkpoint: nothing to evaluate"
    losses = checkpoint_losses(cfg)
    assert not [p for p, loss in losses.items() if not math.isfinite(loss)], losses


def test_a_run_that_diverges_after_good_epochs_reports_its_last_good_checkpoint(make_cfg) -> None:
    cfg = make_cfg("optim=sgd", "optim.optimizer.lr=0.05", "trainer.max_epochs=4",
                   "+callbacks.explode._target_=conftest.ExplodingGradients", "+callbacks.explode.step=9")
    metrics = train(cfg)  # 4 batches per epoch: epochs 0 and 1 train normally, step 9 explodes
    assert metrics["diverged"] is True and 9 <= metrics["diverged_step"] <= 10
    losses = checkpoint_losses(cfg)
    assert losses and all(math.isfinite(v) for v in losses.values()), losses
    best = Path(cfg.paths.output_dir) / "checkpoints" / "best.ckpt"
    assert str(best) in losses and torch.load(best, weights_only=True)["global_step"] <= 8
    assert 0.0 <= metrics["test/acc"] <= 1.0 and math.isfinite(metrics["val/loss"])
    assert math.isfinite(metrics["train/loss"]), "train/* come from the last good epoch"
    assert json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())["test/acc"] == metrics["test/acc"]


def test_runs_without_logger_still_write_metrics(make_cfg) -> None:
    cfg = make_cfg("logger=none")
    metrics = train(cfg)
    assert (Path(cfg.paths.output_dir) / "metrics.json").exists() and "test/acc" in metrics
    assert not (Path(cfg.paths.output_dir) / "tensorboard").exists()


DDP_SCRIPT = """
import json, sys
from pathlib import Path
sys.path.insert(0, {tests!r})
import torch
from conftest import FAST, compose_config
from idlab.run import train
from idlab.training.module import Classifier

step = Classifier._step

def poisoned(self, batch, split):  # rank 1 alone sees a NaN loss at optimiser step 5
    loss = step(self, batch, split)
    if split == "train" and self.global_rank == 1 and self.global_step == 5:
        loss = loss * float("nan")
    return loss

Classifier._step = poisoned
overrides = [o for o in FAST if not o.startswith(("trainer=", "trainer.max_epochs"))]
cfg = compose_config(["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.max_epochs=3",
                      *overrides, "model.width=16", "logger=none", "~callbacks.lr_monitor"], Path(sys.argv[1]),
                     fast=False)
metrics = train(cfg)
Path(sys.argv[1], f"rank{{torch.distributed.get_rank()}}.json").write_text(json.dumps(metrics))
"""


def test_ddp_every_rank_stops_when_one_rank_sees_a_nonfinite_loss(tmp_path: Path) -> None:
    # Without agreement rank 1 stops at step 6 while rank 0 waits for it in step 6's gradient all-reduce forever.
    script = tmp_path / "ddp_nan.py"
    script.write_text(DDP_SCRIPT.format(tests=str(Path(__file__).parent)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src"),
           "MASTER_PORT": str(29600 + os.getpid() % 1000)}
    try:
        done = subprocess.run([sys.executable, str(script), str(tmp_path / "run")], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=240)
    except subprocess.TimeoutExpired:
        pytest.fail("a rank was left waiting: the DDP run did not end within 240 s")
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / "run" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["diverged"] is True and ranks[1]["diverged"] is True
    assert ranks[0]["diverged_step"] == ranks[1]["diverged_step"] == 5
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["diverged"] is True and math.isfinite(saved["test/acc"]), "tested on the epoch-0 checkpoint"


def test_guard_checks_weights_optimiser_state_and_a_loss_and_remembers_the_first_bad_step() -> None:
    from idlab.training.nonfinite import NonFiniteGuard, all_finite

    guard = NonFiniteGuard()
    guard.push(0, torch.tensor(1.0))
    assert guard.finite_so_far() and guard.finite_so_far(), "reading the flag twice changes nothing"
    weights = [torch.ones(3), torch.tensor(4.0)]  # e.g. a parameter and Adam's scalar `step`
    assert guard.checkpoint_safe(1, weights, lambda: torch.tensor(0.5))
    assert not guard.checkpoint_safe(2, weights, lambda: torch.tensor(float("inf"))), "finite weights, inf loss"
    assert guard.bad_step == 2 and not guard.finite_so_far()
    assert not bool(all_finite([torch.ones(2), torch.tensor([1.0, float("nan")])]))
    flagged = NonFiniteGuard()
    flagged.push(5, torch.tensor(False))  # a device flag kept by a captured step instead of a loss
    assert not flagged.finite_so_far() and flagged.bad_step == 5


def test_fast_log_moves_only_what_needs_moving() -> None:
    from pytorch_lightning.trainer.connectors.logger_connector.result import _ResultCollection, _ResultMetric

    from idlab.training import fast_log

    assert fast_log.install() and fast_log.install(), "installed once, idempotent"
    results = _ResultCollection(training=True)
    results.batch_idx = 0
    results.log("training_step", "train/loss", torch.tensor(2.0), on_step=True, on_epoch=True, batch_size=4)
    metric = results["training_step.train/loss"]
    meta = metric.meta
    assert metric.to(torch.device("cpu")) is metric and metric.meta is meta, "nothing to move: the walk is skipped"
    metric.to(torch.float64)  # not a device: Lightning's own `to`
    assert metric.value.dtype == torch.float64 and metric.meta is not meta
    metric._forward_cache = torch.zeros(2, device="meta")  # one tensor elsewhere
    assert not fast_log.already_on(metric, torch.device("cpu"))
    metric.to(torch.device("meta"))  # another device: Lightning's own walk moves every tensor
    assert {t.device.type for t in (metric.value, metric.cumulated_batch_size, *metric._defaults.values())} == {"meta"}
    assert _ResultMetric.to.__wrapped__ is not _ResultMetric.to


def test_to_host_makes_one_copy_per_dtype(monkeypatch: pytest.MonkeyPatch) -> None:
    from idlab.training import fast_log

    copies = []
    stack = torch.stack
    monkeypatch.setattr(torch, "stack", lambda tensors: copies.append(len(tensors)) or stack(tensors))
    values = [torch.tensor(1.5), torch.tensor([2]), torch.tensor(3), 4.0, torch.zeros(3), torch.tensor(0.25)]
    moved = fast_log.to_host(values, host="meta")  # the CPU plays the device's part: its scalars go elsewhere
    assert sorted(copies) == [2, 2], "one copy for the two float32 scalars, one for the two int64 ones"
    assert [(m.device.type, m.dtype, m.shape) for m in moved[:3]] == [
        ("meta", v.dtype, v.shape) for v in values[:3]] and moved[5].device.type == "meta"
    assert moved[3] == 4.0 and moved[4] is values[4], "numbers and tensors of several values are left alone"
    on_host = fast_log.to_host(values)
    assert all(a is b for a, b in zip(on_host, values)), "already on the host: nothing is copied"
    assert fast_log.host_floats([torch.tensor(0.1), 2]) == [float(torch.tensor(0.1)), 2.0]


@pytest.mark.parametrize("graph", ["off", "emulate"])
def test_fast_log_logs_what_lightning_logs(graph: str, make_cfg, monkeypatch: pytest.MonkeyPatch) -> None:
    from pytorch_lightning.trainer.connectors.logger_connector.result import _ResultMetric

    overrides = ["logger=csv", "trainer.max_epochs=2", "trainer.log_every_n_steps=1", f"graph.mode={graph}"]
    fast_cfg = make_cfg(*overrides, run="fast")
    fast = train(fast_cfg)
    monkeypatch.setattr(_ResultMetric, "to", _ResultMetric.to.__wrapped__)
    slow_cfg = make_cfg(*overrides, run="lightning")
    slow = train(slow_cfg)
    assert {k: v for k, v in fast.items() if k != "code"} == {k: v for k, v in slow.items() if k != "code"}
    rows = [(Path(c.paths.output_dir) / "csv" / "metrics.csv").read_text() for c in (fast_cfg, slow_cfg)]
    assert rows[0] == rows[1] and rows[0].count("\n") > 4, "every logged row the same, digit for digit"


def test_progress_bar_values_only_where_a_bar_shows_them(make_cfg, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a progress bar nothing is logged with prog_bar (Lightning would turn each such value into a number, a
    GPU synchronisation, whenever it gathers metrics); with one the bar gets its values; the metrics are the same."""
    import idlab.run as run

    trainers = []
    build = run.build_trainer
    monkeypatch.setattr(run, "build_trainer", lambda cfg: trainers.append(build(cfg)) or trainers[-1])
    quiet = train(make_cfg(run="quiet"))
    shown = train(make_cfg("trainer.enable_progress_bar=true", run="shown"))
    assert trainers[0].progress_bar_callback is None and trainers[1].progress_bar_callback is not None
    assert not trainers[0].progress_bar_metrics and "test/acc" in trainers[1].progress_bar_metrics
    assert {k: v for k, v in quiet.items() if k != "code"} == {k: v for k, v in shown.items() if k != "code"}
