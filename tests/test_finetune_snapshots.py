"""Fine-tuning from pretraining snapshots: the Snapshots callback keeps the listed steps (0 = the init), and the
digits 0–4 → 5–9 experiments load θ0 from a snapshot with a fresh head and see only their own classes."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from idlab.adapt.init_from import read_state_dict
from idlab.callbacks import Snapshots
from idlab.run import build_module, train

SHORT = ["trainer.max_steps=3", "trainer.check_val_every_n_epoch=1", "trainer.limit_val_batches=1",
         "trainer.limit_test_batches=1", "test=false"]


@pytest.mark.parametrize("steps", [[], [-1], [2.5]])
def test_snapshot_steps_must_be_listed_non_negative_integers(steps: list) -> None:
    with pytest.raises(ValueError, match=r"callbacks\.snapshots\.steps=.*e\.g\. \[0,100,1000\]"):
        Snapshots("unused", steps)


def test_digit_snapshots_hold_the_init_and_each_listed_step_and_seed_the_fine_tuning(make_cfg) -> None:
    pretrain = make_cfg("+exp=pretrain_mnist_digits", "data=mnist_mini", "callbacks.snapshots.steps=[0,2,3]", *SHORT, run="pre")
    assert list(pretrain.data.classes) == [0, 1, 2, 3, 4]
    torch.manual_seed(pretrain.seed)
    init = instantiate(pretrain.model, spec=instantiate(pretrain.data).spec).state_dict()
    train(pretrain)
    paths = sorted((Path(pretrain.paths.output_dir) / "snapshots").glob("*.ckpt"))
    assert [p.name for p in paths] == ["step000000.ckpt", "step000002.ckpt", "step000003.ckpt"]
    step0, step2, step3 = (read_state_dict(p) for p in paths)
    assert all(torch.equal(step0[k], init[k]) for k in init), "step 0 is the untrained init"
    assert any(not torch.equal(step2[k], step3[k]) for k in step2), "snapshots are taken at different steps"

    cfg = make_cfg("+exp=finetune_mnist_digits", "data=mnist_mini", f"pretrained={paths[1]}", "adapt.d=20",
                   "seed=5", *SHORT, run="ft")
    data = instantiate(cfg.data)
    data.setup()
    assert set(data.splits["train"].y.unique().tolist()) == {5, 6, 7, 8, 9}
    base = build_module(cfg, data).net.get_base_model()
    loaded = {k: v for k, v in base.state_dict().items() if not k.startswith("head.")}
    assert all(torch.equal(v, step2[k]) for k, v in loaded.items()), "θ0 is the snapshot"
    assert not torch.equal(base.head.weight, step2["head.weight"]), "the new task gets a fresh head"
    assert train(cfg)["params/trainable"] == 20
