"""adapt=lora through idlab.run.train: logged counts, saved and resumed adapters, export, shipped experiments."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from conftest import compose_config
from idlab.adapt.lora_export import export_run
from idlab.run import build_module, train

LORA_EXPS = ("lora_lenet_mnist", "lora_resnet_cifar10", "lora_mod97")


def last_ckpt(cfg) -> Path:  # noqa: ANN001 - a composed DictConfig
    """The run folder's checkpoints/last.ckpt."""
    return Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"


def test_lora_run_logs_counts_saves_adapters_and_exports(make_cfg, tmp_path: Path) -> None:
    cfg = make_cfg("adapt=lora", "adapt.r=2", "model.width=16", "test=false")
    metrics = train(cfg)
    assert metrics["params/trainable"] == 2 * (784 + 16) + 2 * (16 + 16) + (16 * 10 + 10)
    assert metrics["params/total"] == 784 * 16 + 16 + 16 * 16 + 16 + 16 * 10 + 10
    assert metrics["lora/r"] == 2 and metrics["lora/layers"] == 2 and metrics["lora/head_params"] == 170

    state = torch.load(last_ckpt(cfg), map_location="cpu", weights_only=True)["state_dict"]
    trained_b = state["net.base_model.model.blocks.0.0.lora_B.default.weight"]
    assert trained_b.abs().sum() > 0, "a trained adapter's B is no longer zero, and the checkpoint holds it"

    (Path(cfg.paths.output_dir) / ".hydra").mkdir()
    OmegaConf.save(cfg, Path(cfg.paths.output_dir) / ".hydra" / "config.yaml")  # as train.py's Hydra does
    exported = export_run(cfg.paths.output_dir, out=tmp_path / "merged.pt")
    data = instantiate(cfg.data)
    trained = build_module(cfg, data)
    trained.load_state_dict(state)
    fine_tune = make_cfg("adapt=lora", "adapt.r=2", "model.width=16", f"adapt.init_from={exported}",
                         run="from_export")
    reloaded = build_module(fine_tune, data)
    x = torch.rand(6, 1, 28, 28)
    trained.eval(), reloaded.eval()
    with torch.no_grad():
        assert torch.allclose(reloaded(x), trained(x), atol=1e-5)  # θ0 = merged weights, fresh B = 0


def test_activation_id_tracks_the_architecture_layers_under_lora(make_cfg) -> None:
    cfg = make_cfg("adapt=lora", "adapt.r=2", "model.width=16", "callbacks=id",
                   "callbacks.activation_id.num_samples=200", "test=false")
    metrics = train(cfg)
    assert {"id/val/blocks.0", "id/val/blocks.1"} <= metrics.keys()  # hooks found FC's names inside PEFT's wrapper
    assert 1.0 < metrics["id/val/blocks.1"] < 16.0


def test_export_of_a_folder_without_checkpoint_names_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"config.yaml does not exist; give the folder of a finished run"):
        export_run(tmp_path)


def test_resumed_lora_run_equals_uninterrupted_run(make_cfg) -> None:
    common = ["data=modular", "model=transformer", "model.width=32", "data.p=23", "data.batch_size=64",
              "optim=adamw", "adapt=lora", "adapt.r=2", "adapt.head=lora", "trainer.limit_train_batches=3",
              "trainer.limit_val_batches=1", "test=false"]
    full = train(make_cfg(*common, "trainer.max_epochs=3", run="full"))
    train(make_cfg(*common, "trainer.max_epochs=2", run="killed"))
    last = last_ckpt(make_cfg(run="killed"))
    resumed = train(make_cfg(*common, "trainer.max_epochs=3", f"ckpt_path={last}", run="resumed"))
    assert resumed["global_step"] == full["global_step"] == 9
    for key in ("val/loss", "val/acc", "train/loss"):
        assert resumed[key] == full[key], key


def test_mod97_exp_fine_tunes_from_another_operation(make_cfg) -> None:
    short = ["trainer.max_steps=2", "trainer.check_val_every_n_epoch=1", "trainer.limit_val_batches=1",
             "trainer.limit_test_batches=1", "test=false"]
    pretrain = make_cfg("+exp=math_equations", "data.op=mul", *short, run="pretrain_mul")
    train(pretrain)
    theta0 = torch.load(last_ckpt(pretrain), map_location="cpu", weights_only=True)["state_dict"]
    cfg = make_cfg("+exp=lora_mod97", f"adapt.init_from={last_ckpt(pretrain)}", "adapt.r=4", *short, run="lora")
    metrics = train(cfg)
    assert metrics["params/trainable"] == 2 * (4 * 4 * 256 + 2 * 4 * (128 + 512)) + 4 * (128 + 97)
    after = torch.load(last_ckpt(cfg), map_location="cpu", weights_only=True)["state_dict"]
    assert torch.equal(after["net.base_model.model.blocks.1.attn.q.base_layer.weight"],
                       theta0["net.blocks.1.attn.q.weight"])  # W0 is the other operation's weights, frozen
    assert torch.equal(after["net.base_model.model.embed.weight"], theta0["net.embed.weight"])


@pytest.mark.parametrize("exp", LORA_EXPS)
def test_every_swept_rank_fits_the_experiment_architecture(exp: str, tmp_path: Path) -> None:
    cfg = compose_config([f"+exp={exp}"], tmp_path, fast=False)
    assert cfg.sweep.param == "adapt.r" and list(cfg.sweep["values"]) == [1, 2, 4, 8, 16, 32]
    spec = instantiate(cfg.data).spec
    theta0 = tmp_path / "theta0.pt"
    torch.save(instantiate(cfg.model, spec=spec).state_dict(), theta0)
    counts = []
    for r in cfg.sweep["values"]:
        run = compose_config([f"+exp={exp}", f"adapt.r={r}", f"adapt.init_from={theta0}"], tmp_path, fast=False)
        adapted = instantiate(run.adapt).apply(instantiate(run.model, spec=spec))
        counts.append(sum(p.numel() for p in adapted.parameters() if p.requires_grad))
    assert counts == sorted(counts) and len(set(counts)) == len(counts), "rank sets the parameter count"


@pytest.mark.parametrize("exp", LORA_EXPS)
def test_sweep_baseline_of_every_exp_composes_to_full_training(exp: str, tmp_path: Path) -> None:
    cfg = compose_config([f"+exp={exp}"], tmp_path, fast=False)
    user = ["pretrained=x.ckpt"] if exp == "lora_mod97" else []  # the one exp the user gives θ0 to
    baseline = compose_config([f"+exp={exp}", *user, "adapt=full", *cfg.sweep.baseline_overrides], tmp_path,
                              fast=False)
    assert type(instantiate(baseline.adapt)).__name__ == "Full"
