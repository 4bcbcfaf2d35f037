"""Architectures: each model's LLID layer is exactly the input of its classifier head; LeNet takes odd sizes."""
from __future__ import annotations

import pytest
import torch

from idlab.data.spec import DataSpec
from idlab.models import FC, LeNet, ResNet, Transformer

MNIST = DataSpec("image", (1, 28, 28), 10)
CIFAR = DataSpec("image", (3, 32, 32), 10)
TOKENS = DataSpec("tokens", (4,), num_classes=23, vocab_size=28)

MODELS = {
    "fc_depth1": (lambda: FC(MNIST, width=8, depth=1), MNIST),
    "fc_depth3": (lambda: FC(MNIST, width=8, depth=3), MNIST),
    "lenet": (lambda: LeNet(MNIST), MNIST),
    "resnet20": (lambda: ResNet(CIFAR, variant="resnet20", width=4), CIFAR),
    "resnet18": (lambda: ResNet(CIFAR, variant="resnet18", width=4), CIFAR),
    "transformer": (lambda: Transformer(TOKENS, width=16, depth=2, heads=2), TOKENS),
}


def batch(spec: DataSpec) -> torch.Tensor:
    """A small random input batch for the spec."""
    g = torch.Generator().manual_seed(0)
    if spec.kind == "tokens":
        return torch.randint(0, spec.vocab_size, (5, *spec.input_shape), generator=g)
    return torch.randn(5, *spec.input_shape, generator=g)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_the_llid_layer_output_is_the_input_of_the_classifier_head(name: str) -> None:
    build, spec = MODELS[name]
    model = build().eval()
    seen: dict[str, torch.Tensor] = {}
    modules = dict(model.named_modules())
    llid = modules[model.llid_layer].register_forward_hook(lambda m, a, out: seen.__setitem__("llid", out))
    head = modules[model.head_name].register_forward_pre_hook(lambda m, args: seen.__setitem__("head", args[0]))
    try:
        with torch.no_grad():
            model(batch(spec))
    finally:
        llid.remove()
        head.remove()
    assert seen["llid"] is seen["head"] or torch.equal(seen["llid"], seen["head"]), \
        f"{name}: the classifier reads something other than {model.llid_layer}"
    assert seen["head"].shape == (5, model.head.in_features)


def test_transformer_llid_is_the_normed_residual_stream_not_the_last_mlp_branch() -> None:
    model = Transformer(TOKENS, width=16, depth=2, heads=2).eval()
    assert model.llid_layer == "ln_f" and "ln_f" in model.id_layers


@pytest.mark.parametrize("side", [28, 29, 30, 31, 32, 37])
def test_lenet_flatten_size_matches_the_feature_map_for_odd_intermediate_sizes(side: int) -> None:
    spec = DataSpec("image", (1, side, side + 1), 10)
    model = LeNet(spec)
    assert model(torch.randn(2, 1, side, side + 1)).shape == (2, 10)
    # MNIST keeps Li et al.'s D = 44,426.
    if side == 28:
        assert sum(p.numel() for p in LeNet(MNIST).parameters()) == 44_426
