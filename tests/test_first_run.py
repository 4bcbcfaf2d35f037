"""What a new user tries first (issue #14's table): the defaults work on the default data, Lightning's switches are
plain overrides, and bad input ends with one line that names the value and the fix, without a traceback."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import REPO, compose_config
from idlab.run import train
from idlab.training.checks import is_bad_input

QUIET = ["trainer=cpu", "logger=none", "++callbacks.progress_bar=null", "+trainer.enable_progress_bar=false"]


def train_py(*overrides: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "train.py", *QUIET, *overrides], cwd=REPO, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "PYTHONPATH": str(REPO / "src"), **(env or {})})


def test_activation_id_runs_on_the_default_data_with_the_whole_val_split(make_cfg) -> None:
    cfg = make_cfg("callbacks=id", "trainer.max_epochs=1")
    assert cfg.callbacks.activation_id.num_samples is None and cfg.data.val_size < 2000
    metrics = train(cfg)
    assert metrics["id/val/llid"] > 0
    assert (Path(cfg.paths.output_dir) / "id.csv").read_text().count("\n") > 1


@pytest.mark.parametrize("overrides,bar", [(["adapt=subspace"], 0.80), (["model=lenet", "adapt=lora"], 0.85)])
def test_parameter_efficient_defaults_learn_the_default_data(overrides: list[str], bar: float,
                                                             tmp_path: Path) -> None:
    cfg = compose_config([*QUIET, *overrides], tmp_path / "run", fast=False)  # the default 10 epochs on mnist_mini
    assert cfg.trainer.max_epochs == 10 and cfg.data._target_.endswith("MNISTMini")
    metrics = train(cfg)
    assert metrics["test/acc"] >= bar, f"{' '.join(overrides)} at its defaults: test/acc {metrics['test/acc']:.3f}"


def test_an_adaptations_step_size_yields_to_overrides_and_experiments(make_cfg) -> None:
    assert make_cfg().optim.optimizer.lr == 1e-3
    assert make_cfg("adapt=subspace").optim.optimizer.lr == 1e-2
    assert make_cfg("adapt=lora").optim.optimizer.lr == 3e-3
    assert make_cfg("adapt=subspace", "optim.optimizer.lr=0.5").optim.optimizer.lr == 0.5
    assert make_cfg("adapt=subspace", "optim=sgd").optim.optimizer._target_ == "torch.optim.SGD"
    li = make_cfg("+exp=li_mnist_fc")
    assert li.optim.optimizer.lr == 1e-2, "θ_d's step size for 10× fewer steps than Li (configs/exp/li_mnist_fc.yaml)"
    assert "optim.optimizer.lr=0.001" in li.sweep.baseline_overrides, "the direct baseline keeps Li et al.'s own"


def test_fast_dev_run_is_a_plain_override_and_still_tests_and_writes_metrics(tmp_path: Path) -> None:
    done = train_py("trainer.fast_dev_run=true", f"hydra.run.dir={tmp_path}")
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["global_step"] == 1 and 0 <= metrics["test/acc"] <= 1


@pytest.mark.parametrize("overrides,named", [
    (["adapt=lora", "adapt.r=0"], "adapt.r=0"),
    (["adapt=subspace", "adapt.d=0"], "adapt.d=0"),
    (["data=mnist", "data.data_dir={tmp}/no_data"], "data.data_dir={tmp}/no_data"),
    (["ckpt_path={tmp}/no.ckpt"], "ckpt_path={tmp}/no.ckpt"),
])
def test_bad_input_is_one_line_naming_the_value_without_a_traceback(overrides: list[str], named: str,
                                                                    tmp_path: Path) -> None:
    run = tmp_path / "run"
    done = train_py(*(o.format(tmp=tmp_path) for o in overrides), f"hydra.run.dir={run}")
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("train.py: error: ") and named.format(tmp=tmp_path) in lines[-1], lines[-5:]
    assert "Traceback" not in done.stderr + done.stdout and "Error executing job" not in done.stderr
    assert lines[-1].removeprefix("train.py: error: ") in (run / "train.log").read_text(), "kept in the run's log"
    assert not (run / "checkpoints").exists()


def test_the_traceback_is_one_environment_variable_away(tmp_path: Path) -> None:
    done = train_py("adapt=lora", "adapt.r=0", f"hydra.run.dir={tmp_path}", env={"HYDRA_FULL_ERROR": "1"})
    assert done.returncode != 0 and "Traceback" in done.stderr and "PeftConfigError: adapt.r=0" in done.stderr


def test_a_composition_error_is_hydras_message_without_a_traceback(tmp_path: Path) -> None:
    done = train_py("trainer.fast_dev_rn=true", f"hydra.run.dir={tmp_path}")
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "trainer.fast_dev_rn" in done.stderr


@pytest.mark.parametrize("overrides", [
    ["optim.optimizer.lr=0"], ["model.width=0"], ["data.classes=[12]"], ["+adapt.bogus=1"],
    ["trainer.precision=bogus"], ["data=modular", "model=lenet"], ["callbacks=id", "callbacks.activation_id.num_samples=5000"],
    ["adapt=subspace", "adapt.init_from=/nonexistent.ckpt"],
])
def test_configuration_data_and_checkpoint_errors_count_as_bad_input(overrides: list[str], make_cfg) -> None:
    with pytest.raises(Exception) as raised:  # noqa: PT011 - each case raises its own error class
        train(make_cfg(*overrides))
    assert is_bad_input(raised.value), f"{type(raised.value).__name__}: {raised.value}"


def test_a_value_error_inside_torch_is_not_bad_input() -> None:
    with pytest.raises(ValueError) as raised:
        torch.nn.functional.cross_entropy(torch.zeros(2, 3), torch.zeros(3, dtype=torch.long))
    assert not is_bad_input(raised.value), "a bug keeps its traceback"
