"""ActivationID as a unit: leaves the model untouched, resolves layers, rank-zero only, bad input named early."""
from __future__ import annotations

import copy
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from idlab.callbacks.activation_id import ActivationID
from idlab.id.activations import match_layers, reduce_output


class TinyNet(nn.Module):
    """Two hidden blocks with dropout and batch norm, so train/eval mode changes the output."""

    id_layers = ("blocks.*",)

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([
            nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.5)),
            nn.Sequential(nn.Linear(16, 8), nn.ReLU()),
        ])
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits."""
        for block in self.blocks:
            x = block(x)
        return self.head(x)


class FakeData:
    """The one method the callback needs from an idlab datamodule."""

    def __init__(self, n: int = 300) -> None:
        g = torch.Generator().manual_seed(0)
        self.x, self.y = torch.randn(n, 6, generator=g), torch.randint(0, 3, (n,), generator=g)

    def split_tensors(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The same tensors for every split."""
        return self.x, self.y


def fake_trainer(tmp_path: Path, step: int = 0, rank_zero: bool = True, sanity: bool = False) -> SimpleNamespace:
    """The attributes of pl.Trainer that ActivationID reads."""
    return SimpleNamespace(global_step=step, current_epoch=0, sanity_checking=sanity, is_global_zero=rank_zero,
                           loggers=[], default_root_dir=str(tmp_path), callback_metrics={}, datamodule=FakeData())


def module() -> nn.Module:
    """A LightningModule stand-in: the adapted network lives at `.net`."""
    holder = nn.Module()
    holder.net = TinyNet()
    return holder


def test_measurement_leaves_modes_grads_params_buffers_and_rng_untouched(tmp_path: Path) -> None:
    pl_module = module()
    pl_module.train()
    pl_module.net.blocks[1].eval()  # a deliberately frozen submodule must stay in eval
    pl_module.net(torch.randn(8, 6)).sum().backward()
    modes = {name: m.training for name, m in pl_module.named_modules()}
    state = copy.deepcopy(pl_module.state_dict())
    grads = {n: p.grad.clone() for n, p in pl_module.named_parameters()}
    requires = {n: p.requires_grad for n, p in pl_module.named_parameters()}
    rng = torch.get_rng_state()
    callback = ActivationID(num_samples=200, estimators=["twonn", "coding_rate"])
    trainer = fake_trainer(tmp_path)
    callback.setup(trainer, pl_module, "fit")
    callback.measure(trainer, pl_module)
    assert {name: m.training for name, m in pl_module.named_modules()} == modes
    for name, value in pl_module.state_dict().items():
        assert torch.equal(value, state[name]), f"{name} changed"
    for name, p in pl_module.named_parameters():
        assert torch.equal(p.grad, grads[name]) and p.requires_grad == requires[name]
    assert torch.equal(torch.get_rng_state(), rng) and torch.is_grad_enabled()
    assert all(not m._forward_hooks for m in pl_module.modules()), "hooks must exist only during the probe pass"
    assert set(trainer.callback_metrics) >= {"id/val/blocks.0", "id/val/blocks.1", "id/val/llid", "id/val/pid",
                                             "coding_rate/val/blocks.0"}


def test_llid_is_the_last_layer_and_pid_the_peak(tmp_path: Path) -> None:
    trainer, pl_module = fake_trainer(tmp_path), module()
    callback = ActivationID(num_samples=200)
    callback.setup(trainer, pl_module, "fit")
    callback.measure(trainer, pl_module)
    values = [float(trainer.callback_metrics[f"id/val/blocks.{i}"]) for i in (0, 1)]
    assert float(trainer.callback_metrics["id/val/llid"]) == values[1]
    assert float(trainer.callback_metrics["id/val/pid"]) == max(values)
    rows = (tmp_path / "id.csv").read_text().splitlines()
    assert rows[0] == "step,split,layer,estimator,value,std" and len(rows) == 3


def test_the_models_llid_layer_is_always_tracked_and_gives_llid(tmp_path: Path) -> None:
    from idlab.data.spec import DataSpec
    from idlab.models import FC

    trainer, pl_module = fake_trainer(tmp_path), nn.Module()
    pl_module.net = FC(DataSpec("image", (6,), 3), width=8, depth=3)
    callback = ActivationID(layers=["blocks.0"], num_samples=200)
    callback.setup(trainer, pl_module, "fit")
    assert callback.layers == ["blocks.0", "blocks.2"], "the head's input (blocks.2) is added to what was asked"
    callback.measure(trainer, pl_module)
    assert trainer.callback_metrics["id/val/llid"] == trainer.callback_metrics["id/val/blocks.2"]


def test_other_ranks_and_the_sanity_check_do_not_run_the_probe(tmp_path: Path) -> None:
    pl_module = module()
    calls = []
    pl_module.net.register_forward_hook(lambda *args: calls.append(1))
    callback = ActivationID(num_samples=50)
    callback.setup(fake_trainer(tmp_path), pl_module, "fit")
    calls.clear()
    callback.measure(fake_trainer(tmp_path, step=3, rank_zero=False), pl_module)
    callback.measure(fake_trainer(tmp_path, step=4, sanity=True), pl_module)
    assert not calls and not (tmp_path / "id.csv").exists()


def test_a_step_is_measured_once(tmp_path: Path) -> None:
    trainer, pl_module = fake_trainer(tmp_path, step=7), module()
    callback = ActivationID(num_samples=50)
    callback.setup(trainer, pl_module, "fit")
    callback.measure(trainer, pl_module)
    callback.measure(trainer, pl_module)
    assert len((tmp_path / "id.csv").read_text().splitlines()) == 1 + 2


def test_figure_every_nth_measurement_and_the_last_at_train_end(tmp_path: Path) -> None:
    drawn: list[int] = []
    logged: list[int] = []
    logger = SimpleNamespace(log_metrics=lambda metrics, step: logged.append(step),
                             experiment=SimpleNamespace(add_figure=lambda tag, figure, step: drawn.append(step)))
    pl_module, callback = module(), ActivationID(num_samples=60, figure_every=3, at_train_end=False,
                                                 estimators=[{"name": "twonn", "n_resamples": 0}])
    callback.setup(fake_trainer(tmp_path), pl_module, "fit")
    for step in range(5):
        trainer = fake_trainer(tmp_path, step=step)
        trainer.loggers = [logger]
        callback.measure(trainer, pl_module)
    assert logged == [0, 1, 2, 3, 4] and drawn == [0, 3]
    callback.on_train_end(trainer, pl_module)
    assert drawn == [0, 3, 4]
    callback.on_train_end(trainer, pl_module)
    assert drawn == [0, 3, 4], "an already drawn profile is not drawn again"


def test_layer_globs_stay_within_one_dotted_segment() -> None:
    net = nn.Module()
    net.layer1 = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
    net.layer2 = nn.Sequential(nn.Linear(2, 2))
    net.pool = nn.Identity()
    assert match_layers(net, ["layer*", "pool"]) == ["layer1", "layer2", "pool"]
    assert match_layers(net, ["layer1.*"]) == ["layer1.0", "layer1.1"]


def test_sequence_outputs_use_the_last_position_unless_asked() -> None:
    out = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)
    assert torch.equal(reduce_output(out, "last"), out[:, -1])
    assert reduce_output(out, "flatten").shape == (2, 12)
    assert torch.equal(reduce_output((out, None), "mean"), out.mean(1))
    assert reduce_output(torch.zeros(2, 3, 5, 5), "last").shape == (2, 75)


def test_unknown_layer_lists_the_model_modules(tmp_path: Path) -> None:
    callback = ActivationID(layers=["blocks.*", "layer9"], num_samples=50)
    with pytest.raises(ValueError, match=r"layer 'layer9' matches no module of TinyNet.*'blocks.0.1'.*'head'"):
        callback.setup(fake_trainer(tmp_path), module(), "fit")


def test_probe_larger_than_the_split_is_named(tmp_path: Path) -> None:
    callback = ActivationID(num_samples=5000)
    with pytest.raises(ValueError, match=r"num_samples=5000 exceeds the 300 examples of the val split"):
        callback.setup(fake_trainer(tmp_path), module(), "fit")


@pytest.mark.parametrize("kwargs,message", [
    ({"num_samples": 2}, "num_samples=2: TwoNN needs at least 3 probe points"),
    ({"estimators": ["twonn", "FastDANCo"]}, r"unknown estimator 'FastDANCo'; valid names: \['twonn'"),
    ({"every_n_steps": 10}, "set exactly one of callbacks.activation_id.every_n_steps"),
    ({"every_n_epochs": None}, "set exactly one of"),
    ({"every_n_epochs": 0}, "cadence must be >= 1"),
    ({"splits": ["validation"]}, r"splits=\['validation'\]"),
    ({"sequence_reduction": "first"}, "sequence_reduction='first'"),
    ({"estimators": ["twonn", {"name": "twonn", "method": "mle"}]}, "distinct `tag:`"),
    ({"figure_every": 0}, "figure_every=0 must be >= 1"),
])
def test_bad_options_fail_at_construction(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ActivationID(**kwargs)
