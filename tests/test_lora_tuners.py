"""adapt=peft: other PEFT tuners (VeRA, TinyLoRA, FourierFT, LoHa) through the same seam as LoRA."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from torch import nn

from idlab.adapt.base import base_model, count_trainable
from idlab.adapt.init_from import load_base_weights
from idlab.adapt.peft_tuner import PeftTuner
from idlab.adapt.peft_wrap import export_merged
from idlab.data.spec import DataSpec
from idlab.models import FC, LeNet

MNIST = DataSpec("image", (1, 28, 28), 10, name="mnist")
CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def fc(seed: int = 0) -> FC:
    """A small FC net: blocks 784→32→32, head 32→10."""
    torch.manual_seed(seed)
    return FC(MNIST, width=32, depth=2)


def test_vera_trains_only_its_scaling_vectors_and_counts_them() -> None:
    adapted = PeftTuner("vera", {"r": 16}, head="frozen").apply(fc())
    trainable = {n for n, p in adapted.named_parameters() if p.requires_grad}
    assert trainable and all("vera_lambda" in n for n in trainable)
    assert count_trainable(adapted) == 2 * (16 + 32)  # λ_d (r) and λ_b (out) per adapted layer


def test_tinylora_with_full_tying_trains_one_vector() -> None:
    adapted = PeftTuner("TinyLoRA", {"r": 2, "u": 24, "weight_tying": 1.0}, head="train").apply(fc())
    assert count_trainable(adapted) == 24 + (32 * 10 + 10)
    logged = PeftTuner("tinylora", {"r": 2, "u": 24, "weight_tying": 1.0}).log_dict(adapted)
    assert logged["peft/adapter_params"] == 24 and logged["peft/head_params"] == 330


def test_head_policy_tuner_adapts_the_head_too() -> None:
    adapted = PeftTuner("fourierft", {"n_frequency": 20}, head="tuner").apply(fc())
    assert count_trainable(adapted) == 3 * 20  # blocks.0.0, blocks.1.0 and head, 20 coefficients each
    assert type(base_model(adapted).head).__module__.startswith("peft.")


@pytest.mark.parametrize("tuner, config", [("vera", {"r": 8}), ("fourierft", {"n_frequency": 30}),
                                           ("loha", {"r": 2}), ("tinylora", {"r": 2, "u": 16})])
def test_merged_export_matches_unmerged_eval(tuner: str, config: dict, tmp_path: Path) -> None:
    adapted = PeftTuner(tuner, config, target_modules=["fc*"]).apply(LeNet(MNIST))
    with torch.no_grad():
        for p in adapted.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.1)
    x = torch.rand(4, 1, 28, 28)
    adapted.eval()
    with torch.no_grad():
        unmerged = adapted(x)
        plain = LeNet(MNIST)
        load_base_weights(plain, export_merged(adapted, tmp_path / "merged.pt"))
        assert torch.allclose(plain.eval()(x), unmerged, atol=1e-5, rtol=1e-4)


def test_hydra_group_builds_the_tuner_from_yaml() -> None:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose("train", overrides=["adapt=peft", "adapt.tuner=vera", "+adapt.config.r=4",
                                          "+adapt.config.projection_prng_key=7", "adapt.target_modules=[blocks]"])
    adaptation = instantiate(cfg.adapt)
    adapted = adaptation.apply(fc())
    assert adaptation.config == {"r": 4, "projection_prng_key": 7}
    assert count_trainable(adapted) == 2 * (4 + 32) + 330
    assert isinstance(base_model(adapted).blocks[0][1], nn.ReLU)
