"""End-to-end runs on CPU: every data × model pair, the default command, determinism, resume, bad input."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import REPO
from idlab.models import IncompatibleDataError
from idlab.run import train
from idlab.training.nonfinite import NonFiniteLossError

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


def test_nonfinite_loss_stops_and_keeps_last_good_checkpoint(make_cfg) -> None:
    cfg = make_cfg("optim=sgd", "optim.optimizer.lr=1e12", "trainer.max_epochs=3", "trainer.limit_train_batches=20")
    with pytest.raises(NonFiniteLossError, match="NaN/inf at step"):
        train(cfg)
    last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    if last.exists():
        state = torch.load(last, weights_only=True)["state_dict"]
        assert all(torch.isfinite(t).all() for t in state.values())


def test_runs_without_logger_still_write_metrics(make_cfg) -> None:
    cfg = make_cfg("logger=none")
    metrics = train(cfg)
    assert (Path(cfg.paths.output_dir) / "metrics.json").exists() and "test/acc" in metrics
    assert not (Path(cfg.paths.output_dir) / "tensorboard").exists()
