"""adapt=subspace through idlab.run.train: logged sizes, checkpoints and resume, SAID, shipped experiments."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from conftest import compose_config
from idlab.adapt.subspace import Subspace
from idlab.run import train

LI_EXPS = sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "configs" / "exp").glob("li_*.yaml"))


def last_ckpt(cfg) -> Path:  # noqa: ANN001 - a composed DictConfig
    """The run folder's checkpoints/last.ckpt."""
    return Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"


def test_subspace_run_logs_d_and_D_and_checkpoints_only_theta_d_beside_theta0(make_cfg) -> None:
    cfg = make_cfg("adapt=subspace", "adapt.d=200", "test=false")
    metrics = train(cfg)
    assert metrics["subspace/d"] == metrics["params/trainable"] == 200
    assert metrics["subspace/D"] == metrics["params/total"] == 199_210
    state = torch.load(last_ckpt(cfg), map_location="cpu", weights_only=True)["state_dict"]
    assert state["net.theta_d"].abs().sum() > 0, "θ_d trained away from zero"
    stored = sum(v.numel() for k, v in state.items() if k.startswith("net.model."))
    assert stored == 199_210 and sum(v.numel() for v in state.values()) < 199_210 + 300  # no P in the checkpoint


def test_resumed_subspace_run_equals_uninterrupted_run(make_cfg) -> None:
    common = ["adapt=subspace", "adapt.d=100", "adapt.projection=sparse", "trainer.limit_train_batches=3",
              "trainer.limit_val_batches=1", "test=false"]
    full = train(make_cfg(*common, "trainer.max_epochs=2", run="full"))
    killed = make_cfg(*common, "trainer.max_epochs=1", run="killed")
    train(killed)
    resumed = train(make_cfg(*common, "trainer.max_epochs=2", f"ckpt_path={last_ckpt(killed)}", run="resumed"))
    assert resumed["global_step"] == full["global_step"] == 6
    for key in ("val/loss", "val/acc", "train/loss"):
        assert resumed[key] == full[key], key


def test_resume_with_another_seed_is_refused(make_cfg) -> None:
    first = make_cfg("adapt=subspace", "adapt.d=50", "test=false", run="first")
    train(first)
    other = make_cfg("adapt=subspace", "adapt.d=50", "adapt.seed=1", "trainer.max_epochs=2", "test=false",
                     f"ckpt_path={last_ckpt(first)}", run="other")
    with pytest.raises(RuntimeError, match="same adapt"):
        train(other)


def test_said_and_head_and_relative_accuracy_are_logged(make_cfg) -> None:
    cfg = make_cfg("adapt=subspace", "adapt.d=120", "adapt.said=true", "adapt.train_head=true",
                   "adapt.baseline_acc=0.5")  # the default callbacks include RelativeAccuracy
    metrics = train(cfg)
    assert metrics["subspace/said_scales"] == 4  # the two hidden layers' weights and biases; the head trains directly
    assert metrics["params/trainable"] == 120 + 200 * 10 + 10
    assert metrics["subspace/rel_test_acc"] == pytest.approx(metrics["test/acc"] / 0.5)
    assert metrics["subspace/rel_acc"] == pytest.approx(metrics["val/acc"] / 0.5)


@pytest.mark.parametrize("name", LI_EXPS)
def test_li_experiments_compose_with_a_d_sweep_and_a_full_baseline(name: str, tmp_path: Path) -> None:
    cfg = compose_config([f"+exp={name}"], tmp_path)
    assert isinstance(instantiate(cfg.adapt), Subspace)
    assert cfg.sweep.param == "adapt.d" and len(cfg.sweep["values"]) >= 8
    assert list(cfg.sweep["values"]) == sorted(cfg.sweep["values"])
    baseline = compose_config([f"+exp={name}", "adapt=full"], tmp_path)  # what sweep.py runs as the baseline
    assert baseline.adapt._target_ == "idlab.adapt.Full" and not {"d", "projection", "said"} & set(baseline.adapt)


def test_li_mnist_fc_is_the_papers_setting(tmp_path: Path) -> None:
    cfg = compose_config(["+exp=li_mnist_fc"], tmp_path)
    assert (cfg.model.width, cfg.model.depth, cfg.data._target_) == (200, 2, "idlab.data.MNIST")
    assert cfg.optim.optimizer._target_ == "torch.optim.Adam" and {290, 400, 750} <= set(cfg.sweep["values"]) | {290}
    assert cfg.optim.optimizer.lr == 1e-2 and list(cfg.sweep.baseline_overrides) == ["optim.optimizer.lr=0.001"]
    assert {300, 400, 500, 750} <= set(cfg.sweep["values"]), "the grid tells 290 from 400 and 500 from 750"
