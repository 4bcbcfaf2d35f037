"""Bad adapt=subspace input fails before training with a message naming the value and the fix."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from idlab.adapt.init_from import InitFromError
from idlab.adapt.subspace import Subspace, SubspaceConfigError
from idlab.data.spec import DataSpec
from idlab.models.fc import FC
from idlab.run import train

MNIST = DataSpec(kind="image", input_shape=(1, 28, 28), num_classes=10)


def fc(width: int = 16) -> FC:
    """784-width-10 FC: D = 785·width + (width+1)·10."""
    return FC(MNIST, width=width, depth=1)


@pytest.mark.parametrize("d", [0, -3, 2.5, True])
def test_non_positive_or_non_integer_d(d):
    with pytest.raises(SubspaceConfigError, match=rf"adapt\.d={d!r} must be a positive integer"):
        Subspace(d=d)


def test_whole_float_d_is_accepted():
    assert Subspace(d=1e3).d == 1000


def test_d_larger_than_D_names_D():
    with pytest.raises(SubspaceConfigError, match=r"adapt\.d=20000 exceeds D=12730.*d ≤ 12730"):
        Subspace(d=20_000).apply(fc())


def test_dense_projection_over_budget_names_size_and_alternatives():
    with pytest.raises(SubspaceConfigError, match=r"0\.05 GiB .*D=12730 × d=1000.*fastfood or sparse"):
        Subspace(d=1000, projection="dense", max_dense_bytes=10_000_000).apply(fc())


def test_unknown_projection():
    with pytest.raises(SubspaceConfigError, match=r"adapt\.projection='gauss'.*dense, sparse, fastfood"):
        Subspace(d=10, projection="gauss")


def test_said_needs_more_than_one_dimension_per_tensor():
    with pytest.raises(SubspaceConfigError, match=r"4 projected tensors.*adapt\.d=4.*d > 4"):
        Subspace(d=4, said=True).apply(fc())


@pytest.mark.parametrize("said", [False, True])
def test_selection_matching_nothing(said):
    with pytest.raises(SubspaceConfigError, match=r"adapt\.include=\['conv\*'\].*select no parameters.*blocks\.0"):
        Subspace(d=10, said=said, include=["conv*"]).apply(fc())


def test_train_head_on_a_model_without_head():
    with pytest.raises(SubspaceConfigError, match=r"no head module 'head'.*adapt\.train_head=false"):
        Subspace(d=10, train_head=True).apply(torch.nn.Sequential(torch.nn.Linear(3, 3)))


def test_baseline_accuracy_outside_zero_one():
    with pytest.raises(SubspaceConfigError, match=r"adapt\.baseline_acc=98"):
        Subspace(d=10, baseline_acc=98)


def test_reinit_without_init_from():
    with pytest.raises(InitFromError, match=r"adapt\.reinit=\['head'\] needs adapt\.init_from"):
        Subspace(d=10, reinit=["head"])


def test_init_from_missing_file(tmp_path: Path):
    with pytest.raises(InitFromError, match="does not exist"):
        Subspace(d=10, init_from=str(tmp_path / "nope.ckpt")).apply(fc())


def test_init_from_not_a_checkpoint(tmp_path: Path):
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(InitFromError, match="is not a PyTorch checkpoint"):
        Subspace(d=10, init_from=str(junk)).apply(fc())


def test_init_from_other_architecture_names_tensors(tmp_path: Path):
    path = tmp_path / "wide.pt"
    torch.save(fc(width=32).state_dict(), path)
    mismatch = r"shape mismatch: .*blocks\.0\.0\.weight: checkpoint \(32, 784\) vs model \(16, 784\)"
    with pytest.raises(InitFromError, match=mismatch):
        Subspace(d=10, init_from=str(path)).apply(fc())


@pytest.mark.parametrize("adaptation", ["full", "subspace"])
def test_reinit_naming_no_module_is_rejected_with_the_module_names(adaptation: str, tmp_path: Path):
    from idlab.adapt import Full

    path = tmp_path / "trained.pt"
    torch.save(fc().state_dict(), path)
    build = (lambda **kw: Full(**kw)) if adaptation == "full" else (lambda **kw: Subspace(d=10, **kw))
    with pytest.raises(InitFromError, match=r"adapt\.reinit names \['classifier'\].*modules are: blocks, blocks\.0.*head"):
        build(init_from=str(path), reinit=["classifier"]).apply(fc())
    with pytest.raises(InitFromError, match=r"adapt\.reinit=\['head'\] needs adapt\.init_from"):
        build(reinit=["head"])


def test_init_from_loads_theta0_and_reinit_keeps_fresh_head(tmp_path: Path):
    trained = fc()
    path = tmp_path / "trained.pt"
    torch.save(trained.state_dict(), path)
    torch.manual_seed(7)
    wrapped = Subspace(d=10, init_from=str(path), reinit=["head"]).apply(fc())
    base = wrapped.get_base_model()
    assert torch.equal(base.blocks[0][0].weight, trained.blocks[0][0].weight)
    assert not torch.equal(base.head.weight, trained.head.weight)


@pytest.mark.parametrize("override,match", [
    ("adapt.d=300000", r"adapt\.d=300000 exceeds D=199210"),
    ("adapt.d=0", r"adapt\.d=0 must be a positive integer"),
    ("adapt.projection=dense", r"dense P would take .* GiB"),
])
def test_bad_subspace_config_fails_before_training(override: str, match: str, make_cfg) -> None:
    extra = ["adapt.d=2000", "adapt.max_dense_bytes=1000000"] if "dense" in override else []
    cfg = make_cfg("adapt=subspace", *extra, override)
    with pytest.raises(ValueError, match=match):
        train(cfg)
    assert not (Path(cfg.paths.output_dir) / "checkpoints").exists()
