"""Bad adapt=lora / adapt=peft settings fail before training, naming the value and the fix."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from idlab.adapt.lora import LoRA
from idlab.adapt.peft_targets import PeftConfigError
from idlab.adapt.peft_tuner import PeftTuner
from idlab.data.spec import DataSpec
from idlab.models import FC, LeNet, ResNet

MNIST = DataSpec("image", (1, 28, 28), 10, name="mnist")


class TinyConvNet(nn.Module):
    """A conv net with one unusual conv (`odd`), named like idlab's nets."""

    head_name = "head"
    lora_targets = ("conv", "odd")

    def __init__(self, **odd: int | str) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 8, 3, padding=1)
        self.odd = nn.Conv2d(8, 8, 3, padding=2 if odd.get("dilation") else 1, **odd)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits."""
        return self.head(self.odd(self.conv(x)).mean((2, 3)))


@pytest.mark.parametrize("r", [0, -3, 2.5, True])
def test_rank_must_be_a_positive_integer(r: object) -> None:
    with pytest.raises(PeftConfigError, match=rf"adapt.r={r!r} must be a positive integer"):
        LoRA(r=r)


@pytest.mark.parametrize("kwargs, match", [
    ({"alpha": 0}, "adapt.alpha=0 must be > 0"),
    ({"dropout": 1.0}, r"adapt.dropout=1.0 must lie in \[0, 1\)"),
    ({"head": "bogus"}, "adapt.head='bogus' is not one of 'lora'"),
    ({"init": "eva"}, "adapt.init='eva' is not supported"),
    ({"reinit": ["head"]}, "only applies with adapt.init_from"),
    ({"target_modules": []}, r"adapt.target_modules=\[\] selects nothing"),
])
def test_bad_scalar_settings_are_named(kwargs: dict, match: str) -> None:
    with pytest.raises(PeftConfigError, match=match):
        LoRA(**kwargs)


def test_rank_above_a_linear_layers_full_rank_names_the_layer() -> None:
    model = FC(MNIST, width=6, depth=2)
    with pytest.raises(PeftConfigError, match=r"adapt.r=7 exceeds the full rank of: blocks.0.0 \(Linear, max rank 6\)"
                       r", blocks.1.0 \(Linear, max rank 6\).*clip_r=true"):
        LoRA(r=7).apply(model)


def test_rank_above_a_conv_layers_full_rank_counts_kernel_and_channels() -> None:
    # conv1: 1 input channel × 5×5 kernel = 25 inputs, 6 outputs → at most rank 6; conv2: min(16, 6·25) = 16
    with pytest.raises(PeftConfigError, match=r"conv1.0 \(Conv2d, max rank 6\)$|conv1.0 \(Conv2d, max rank 6\);"):
        LoRA(r=7, target_modules=["conv*"]).apply(LeNet(MNIST))
    with pytest.raises(PeftConfigError, match=r"conv2.0 \(Conv2d, max rank 16\)"):
        LoRA(r=17, target_modules=["conv2"]).apply(LeNet(MNIST))
    LoRA(r=16, target_modules=["conv2"]).apply(LeNet(MNIST))  # the bound itself is allowed


def test_target_matching_nothing_lists_the_adaptable_layers() -> None:
    with pytest.raises(PeftConfigError, match=r"'blocks.\*.attn' matches no adaptable layer of LeNet; layers it can "
                       r"adapt: conv1.0 \(Conv2d\), conv2.0 \(Conv2d\), fc1.0 \(Linear\), fc2.0 \(Linear\), head"):
        LoRA(target_modules=["fc1", "blocks.*.attn"]).apply(LeNet(MNIST))


def test_target_that_is_only_the_excluded_head_says_so() -> None:
    with pytest.raises(PeftConfigError, match="only selects the head 'head'.*adapt.head='lora'"):
        LoRA(target_modules=["head"], head="train").apply(LeNet(MNIST))


@pytest.mark.parametrize("odd, match", [
    ({"groups": 8}, r"'odd' is a grouped/depthwise conv \(groups=8\): PEFT cannot merge"),
    ({"groups": 2}, r"'odd' is a grouped/depthwise conv \(groups=2\)"),
    ({"dilation": 2}, r"'odd' has dilation=\(2, 2\).*adapted and merged outputs would differ"),
    ({"padding_mode": "circular"}, r"padding_mode='circular'"),
])
def test_convs_peft_cannot_merge_are_refused(odd: dict, match: str) -> None:
    with pytest.raises(PeftConfigError, match=match):
        LoRA(r=2).apply(TinyConvNet(**odd))
    LoRA(r=2, target_modules=["conv"]).apply(TinyConvNet(**odd))  # leaving it out works


def test_svd_inits_need_linear_targets() -> None:
    with pytest.raises(PeftConfigError, match=r"adapt.init='pissa' is defined for Linear layers only.*conv1.0"):
        LoRA(r=2, init="pissa").apply(LeNet(MNIST))


def test_reinit_of_a_module_the_model_lacks(tmp_path: Path) -> None:
    model = FC(MNIST, width=8, depth=1)
    torch.save(model.state_dict(), tmp_path / "theta0.pt")
    with pytest.raises(ValueError, match=r"adapt.reinit names \['classifier'\].*modules are: blocks, blocks.0"):
        LoRA(r=2, init_from=str(tmp_path / "theta0.pt"), reinit=["classifier"]).apply(model)


def test_init_from_of_another_architecture_is_refused(tmp_path: Path) -> None:
    torch.save(FC(MNIST, width=8, depth=1).state_dict(), tmp_path / "fc.pt")
    with pytest.raises(ValueError, match="does not fit this model"):
        LoRA(r=2, init_from=str(tmp_path / "fc.pt")).apply(ResNet(DataSpec("image", (3, 32, 32), 10), "resnet20", 4))


def test_unknown_tuner_lists_peft_tuners() -> None:
    with pytest.raises(PeftConfigError, match=r"adapt.tuner='intrinsic' is not a PEFT .* tuner; choose one of: .*"
                       r"fourierft.*tinylora.*vera"):
        PeftTuner("intrinsic")


def test_prompt_tuning_is_refused() -> None:
    with pytest.raises(PeftConfigError, match="does not adapt layers of a plain model"):
        PeftTuner("prompt_tuning")


@pytest.mark.parametrize("config, match", [
    ({"rank": 4}, r"adapt.config has \['rank'\], not fields of VeraConfig; its fields: .*\br\b"),
    ({"modules_to_save": ["head"]}, "adapt.config.modules_to_save is set by idlab; use adapt.head"),
    ({"target_modules": ["q"]}, "use adapt.target_modules"),
])
def test_tuner_config_fields_are_checked(config: dict, match: str) -> None:
    with pytest.raises(PeftConfigError, match=match):
        PeftTuner("vera", config)


def test_tuner_that_cannot_wrap_a_layer_type_says_which() -> None:
    with pytest.raises(PeftConfigError, match=r"PEFT .* cannot apply VERA to LeNet: .*Conv2d"):
        PeftTuner("vera", {"r": 4}).apply(LeNet(MNIST))
