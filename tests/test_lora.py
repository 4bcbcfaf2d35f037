"""LoRA through PEFT on idlab's architectures: no-op at init, what trains, merging, counts, θ0 loading."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from idlab.adapt.base import base_model, count_trainable
from idlab.adapt.init_from import load_base_weights
from idlab.adapt.lora import LoRA
from idlab.adapt.peft_wrap import export_merged
from idlab.data.spec import DataSpec
from idlab.models import FC, LeNet, ResNet, Transformer

MNIST = DataSpec("image", (1, 28, 28), 10, name="mnist")
CIFAR = DataSpec("image", (3, 32, 32), 10, name="cifar10")
MOD = DataSpec("tokens", (4,), 13, vocab_size=18, name="modular")

ARCHS = {
    "fc": (lambda: FC(MNIST, width=32, depth=2), lambda: torch.rand(4, 1, 28, 28)),
    "lenet": (lambda: LeNet(MNIST), lambda: torch.rand(4, 1, 28, 28)),
    "resnet20": (lambda: ResNet(CIFAR, variant="resnet20", width=8), lambda: torch.rand(3, 3, 32, 32)),
    "resnet18": (lambda: ResNet(CIFAR, variant="resnet18", width=8), lambda: torch.rand(3, 3, 32, 32)),
    "transformer": (lambda: Transformer(MOD, width=32, depth=2, heads=4), lambda: torch.randint(0, 18, (5, 4))),
}


def build(arch: str, seed: int = 0) -> tuple[nn.Module, torch.Tensor]:
    """A freshly initialised architecture and an input batch for it."""
    torch.manual_seed(seed)
    make_model, make_input = ARCHS[arch]
    return make_model(), make_input()


def perturb_adapters(module: nn.Module) -> None:
    """Give every LoRA B (zero at init) random values, so merging has something to merge."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.2)


@pytest.mark.parametrize("init", [True, "gaussian"])
@pytest.mark.parametrize("arch", list(ARCHS))
def test_adapter_at_init_leaves_outputs_unchanged(arch: str, init: bool | str) -> None:
    model, x = build(arch)
    model.eval()
    with torch.no_grad():
        before = model(x)
    adapted = LoRA(r=2, init=init, head="lora").apply(model)
    adapted.eval()
    with torch.no_grad():
        after = adapted(x)
    assert torch.equal(before, after)


def test_pissa_init_keeps_outputs_up_to_rounding() -> None:
    model, x = build("fc")
    with torch.no_grad():
        before = model(x)
    adapted = LoRA(r=4, init="pissa", head="frozen").apply(model)
    with torch.no_grad():
        assert torch.allclose(adapted(x), before, atol=1e-5)


@pytest.mark.parametrize("head", ["lora", "train", "frozen"])
def test_only_adapters_and_chosen_head_receive_gradients(head: str) -> None:
    model, x = build("lenet")
    original = {n: p.detach().clone() for n, p in model.named_parameters()}
    adapted = LoRA(r=2, head=head).apply(model)
    perturb_adapters(adapted)
    adapted(x).logsumexp(-1).sum().backward()
    with_grad = {n for n, p in adapted.named_parameters() if p.grad is not None}
    expected = {n for n, p in adapted.named_parameters()
                if "lora_" in n and (head == "lora" or ".head." not in n)}
    if head == "train":
        expected |= {"base_model.model.head.weight", "base_model.model.head.bias"}
    assert with_grad == expected
    assert {n for n, p in adapted.named_parameters() if p.requires_grad} == expected
    torch.optim.SGD([p for p in adapted.parameters() if p.requires_grad], lr=0.1).step()
    now = {n.replace(".base_layer", ""): p for n, p in base_model(adapted).named_parameters()}  # PEFT keeps W0 there
    changed = {n for n, value in original.items() if not torch.equal(now[n], value)}
    assert changed == ({"head.weight", "head.bias"} if head == "train" else set())


@pytest.mark.parametrize("options", [{}, {"use_dora": True}, {"use_rslora": True, "dropout": 0.1}])
@pytest.mark.parametrize("arch", list(ARCHS))
def test_merged_export_matches_unmerged_eval(arch: str, options: dict, tmp_path: Path) -> None:
    model, x = build(arch)
    adapted = LoRA(r=2, alpha=4.0, head="lora", **options).apply(model)
    perturb_adapters(adapted)
    adapted.eval()
    with torch.no_grad():
        unmerged = adapted(x)
    path = export_merged(adapted, tmp_path / "merged.pt")
    plain, _ = build(arch, seed=1)
    load_base_weights(plain, path)  # the exported file is what adapt.init_from reads
    plain.eval()
    with torch.no_grad():
        merged = plain(x)
        again = adapted(x)
    assert not torch.allclose(unmerged, base_output(arch, x), atol=1e-3)  # the adapters do something
    assert torch.allclose(merged, unmerged, atol=1e-5, rtol=1e-4)
    assert torch.equal(again, unmerged)  # exporting left the training module as it was
    assert not list(tmp_path.glob("*.tmp"))


def base_output(arch: str, x: torch.Tensor) -> torch.Tensor:
    """Eval output of the un-adapted architecture (same seed as `build`)."""
    model, _ = build(arch)
    model.eval()
    with torch.no_grad():
        return model(x)


def lora_count(layer: nn.Module, r: int) -> int:
    """Hand count of one LoRA adapter: A (r × in·k) plus B (out × r)."""
    if isinstance(layer, nn.Linear):
        return r * (layer.in_features + layer.out_features)
    kernel = layer.kernel_size[0] * layer.kernel_size[1]
    return r * layer.in_channels * kernel + layer.out_channels * r


def test_parameter_counts_match_hand_counts() -> None:
    fc = LoRA(r=4, head="train").apply(FC(MNIST, width=200, depth=2))
    assert count_trainable(fc) == 4 * (784 + 200) + 4 * (200 + 200) + (200 * 10 + 10)

    lenet, _ = build("lenet")
    sizes = [lenet.conv1[0], lenet.conv2[0], lenet.fc1[0], lenet.fc2[0]]
    adapted = LoRA(r=4, head="train").apply(lenet)
    assert count_trainable(adapted) == sum(lora_count(layer, 4) for layer in sizes) + 84 * 10 + 10
    logged = LoRA(r=4, head="train").log_dict(adapted)
    assert logged["lora/adapter_params"] == sum(lora_count(layer, 4) for layer in sizes)
    assert logged["lora/head_params"] == 850 and logged["lora/layers"] == 4

    transformer = LoRA(r=2, head="lora").apply(Transformer(MOD, width=32, depth=2, heads=4, mlp_ratio=4))
    per_block = 4 * 2 * (32 + 32) + 2 * 2 * (32 + 128)
    assert count_trainable(transformer) == 2 * per_block + 2 * (32 + 13)


def test_clip_r_gives_small_layers_their_full_rank() -> None:
    lenet, _ = build("lenet")
    layers = [lenet.conv1[0], lenet.conv2[0], lenet.fc1[0], lenet.fc2[0], lenet.head]
    adapted = LoRA(r=8, head="lora", clip_r=True).apply(lenet)
    ranks = [6, 8, 8, 8, 8]  # conv1: 6 output channels; head: min(84, 10) = 10 ≥ 8
    assert count_trainable(adapted) == sum(lora_count(layer, r) for layer, r in zip(layers, ranks))


def test_base_model_keeps_architecture_names_for_hooks() -> None:
    model, x = build("transformer")
    adapted = LoRA(r=2).apply(model)
    base = base_model(adapted)
    assert base is model
    names = {n for n, _ in base.named_modules()}
    assert {"blocks.0.attn", "blocks.1.mlp", "ln_f", "head"} <= names
    seen: list[torch.Tensor] = []
    base.get_submodule("blocks.0.attn").register_forward_hook(lambda m, i, o: seen.append(o))
    perturb_adapters(adapted)
    adapted(x)
    assert seen and seen[0].shape == (5, 4, 32)


def test_init_from_loads_theta0_and_reinit_keeps_fresh_head(tmp_path: Path) -> None:
    donor, _ = build("fc", seed=3)
    path = tmp_path / "theta0.pt"
    torch.save(donor.state_dict(), path)
    model, _ = build("fc", seed=4)
    fresh_head = model.head.weight.detach().clone()
    adapted = LoRA(r=2, init_from=str(path), reinit=["head"]).apply(model)
    base = base_model(adapted)
    assert torch.equal(base.blocks[0][0].base_layer.weight, donor.blocks[0][0].weight)
    assert torch.equal(base.head.weight, fresh_head)

    other_classes = FC(DataSpec("image", (1, 28, 28), 5, name="five"), width=32, depth=2)
    LoRA(r=2, init_from=str(path), reinit=["head"]).apply(other_classes)  # new task head of another shape
    assert torch.equal(other_classes.blocks[1][0].base_layer.weight, donor.blocks[1][0].weight)
