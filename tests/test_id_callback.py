"""ActivationID as a unit: leaves the model untouched, resolves layers, rank-zero only, bad input named early."""
from __future__ import annotations

import copy
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

import idlab.callbacks.activation_id as activation_id
from idlab.callbacks.activation_id import ActivationID
from idlab.models.base import evaluation
from idlab.id import gride, id_scaling, neighbourhood_overlap, twonn_bootstrap
from idlab.id.activations import PassRecording, collect_activations, match_layers, reduce_output
from idlab.id.report import read_csv, scale_figure

twonn_module = sys.modules["idlab.id.twonn"]  # the package's `twonn` attribute is the function


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
    assert rows[0] == "step,split,layer,estimator,value,std,scale" and len(rows) == 3


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


MULTISCALE = ["twonn", {"name": "gride", "n1": 2}, {"name": "id_scaling", "range_max": 16},
              {"name": "overlap", "k": 10}]


def recording_logger(figures: list[str], metrics: dict[str, float]) -> SimpleNamespace:
    """A logger that records logged scalars and figure tags."""
    return SimpleNamespace(log_metrics=lambda values, step: metrics.update(values),
                           experiment=SimpleNamespace(add_figure=lambda tag, figure, step: figures.append(tag)))


def test_gride_scaling_and_overlap_from_one_search_per_layer_and_split(tmp_path: Path, monkeypatch) -> None:
    searches: list[int] = []
    search = activation_id.distinct_search

    def counted(points, k, candidates):
        searches.append(k)
        return search(points, k, candidates)

    def forbidden(*args, **kwargs):
        raise AssertionError("an estimator searched again instead of reusing the layer's search")

    monkeypatch.setattr(activation_id, "distinct_search", counted)
    monkeypatch.setattr(twonn_module, "distinct_search", forbidden)
    figures: list[str] = []
    metrics: dict[str, float] = {}
    trainer, pl_module = fake_trainer(tmp_path), module()
    trainer.loggers = [recording_logger(figures, metrics)]
    callback = ActivationID(num_samples=250, splits=["val", "train"], estimators=MULTISCALE)
    callback.setup(trainer, pl_module, "fit")
    callback.measure(trainer, pl_module)
    assert searches == [16] * 4, "one search per layer and split, deep enough for every estimator"
    alone = ActivationID(num_samples=250, estimators=["twonn"])
    alone.setup(trainer, pl_module, "fit")
    searches.clear()
    alone.measure(fake_trainer(tmp_path, step=1), pl_module)
    assert searches == [2, 2], "TwoNN alone searches as deep as before"

    monkeypatch.setattr(twonn_module, "distinct_search", search)
    x, y = callback.probes["val"]
    with evaluation(pl_module):
        features = collect_activations(pl_module.net, pl_module.net, callback.layers, x, 64, torch.device("cpu"))
    points = features["blocks.1"]
    assert metrics["id/val/blocks.1"] == twonn_bootstrap(points).value
    assert metrics["gride/val/blocks.1"] == gride(points, 2, 4).value
    assert metrics["gride/val/blocks.1_std"] == gride(points, 2, 4).std
    curve = id_scaling(points, 16)
    assert [metrics[f"id_scaling/val/blocks.1/n{r}"] for r in (2, 4, 8, 16)] == curve.ids.tolist()
    assert metrics["id_scaling/val/blocks.1/n16_std"] == curve.errors[-1]
    assert metrics["overlap/val/blocks.1"] == neighbourhood_overlap(points, y, 10)
    assert {"id/val/llid", "id/val/pid", "gride/val/llid", "gride/val/pid"} <= set(metrics)
    assert not any(k.startswith(("id_scaling/val/llid", "overlap/val/llid")) for k in metrics)
    assert sorted(figures) == ["id_profile", "id_scaling_vs_scale/blocks.0", "id_scaling_vs_scale/blocks.1",
                               "overlap_profile"]

    rows = read_csv(tmp_path / "id.csv")
    scaling = [r for r in rows if r.split == "val" and r.layer == "blocks.1" and r.estimator.startswith("id_scaling")]
    assert [r.estimator for r in scaling] == ["id_scaling/n2", "id_scaling/n4", "id_scaling/n8", "id_scaling/n16"]
    assert [r.scale for r in scaling] == pytest.approx(curve.scales.tolist(), rel=1e-12)
    assert [r.value for r in scaling] == pytest.approx(curve.ids.tolist(), rel=1e-12)
    assert all(r.scale is None for r in rows if not r.estimator.startswith("id_scaling"))
    scale_figure({"val": scaling}, "ID vs scale, drawn offline from id.csv")


def test_an_estimator_can_be_limited_to_some_layers(tmp_path: Path) -> None:
    trainer, pl_module = fake_trainer(tmp_path), module()
    callback = ActivationID(num_samples=120, estimators=[
        {"name": "twonn", "n_resamples": 0}, {"name": "id_scaling", "range_max": 8, "layers": ["blocks.1"]}])
    callback.setup(trainer, pl_module, "fit")
    callback.measure(trainer, pl_module)
    assert {(r.layer, r.estimator.split("/")[0]) for r in read_csv(tmp_path / "id.csv")} == {
        ("blocks.0", "twonn"), ("blocks.1", "twonn"), ("blocks.1", "id_scaling")}
    bad = ActivationID(num_samples=120, estimators=[{"name": "overlap", "layers": ["blocks.*", "head"]}])
    with pytest.raises(ValueError, match=r"estimator 'overlap': layers entry 'head' matches none of the tracked"):
        bad.setup(fake_trainer(tmp_path), module(), "fit")


def test_scale_and_neighbourhood_sizes_are_checked_against_the_probe_before_training(tmp_path: Path) -> None:
    callback = ActivationID(num_samples=None, estimators=[{"name": "id_scaling", "range_max": 512}])
    with pytest.raises(ValueError, match=r"the val probe \(300 points\) is too small for estimator 'id_scaling': "
                                         r"range_max=512 needs more than 512 points, got N=300"):
        callback.setup(fake_trainer(tmp_path), module(), "fit")


@pytest.mark.parametrize("kwargs,message", [
    ({"num_samples": 2}, "num_samples=2: TwoNN needs at least 3 probe points"),
    ({"num_samples": 64, "estimators": ["id_scaling"]},
     r"num_samples=64 is too small for estimator 'id_scaling': range_max=64 needs more than 64 points"),
    ({"num_samples": 30, "estimators": ["overlap"]}, r"num_samples=30 is too small .* k=30 neighbours need more"),
    ({"estimators": [{"name": "overlap", "k": 0}]}, r"k=0 must be a positive integer"),
    ({"estimators": [{"name": "id_scaling", "range_max": 1}]}, r"range_max=1 must be an integer >= 2"),
    ({"estimators": [{"name": "id_scaling", "method": "mle"}]}, r"method='mle' is not an ID-scaling method"),
    ({"estimators": [{"name": "gride", "n1": 2, "n2": 2}]}, r"1 <= n1 < n2, got n1=2, n2=2"),
    ({"estimators": [{"name": "gride", "layers": "pool"}]}, r"layers='pool' must be a non-empty list"),
    ({"estimators": [{"name": "gride", "tag": "gride/2"}]}, r"may not contain '/'"),
    ({"estimators": ["twonn", "FastDANCo"]}, r"unknown estimator 'FastDANCo'; valid names: \['twonn'"),
    ({"every_n_steps": 10}, "set exactly one of callbacks.activation_id.every_n_steps"),
    ({"every_n_epochs": None}, "set exactly one of"),
    ({"every_n_epochs": 0}, "cadence must be >= 1"),
    ({"splits": ["validation"]}, r"splits=\['validation'\]"),
    ({"sequence_reduction": "first"}, "sequence_reduction='first'"),
    ({"estimators": ["twonn", {"name": "twonn", "method": "mle"}]}, "distinct `tag:`"),
    ({"figure_every": 0}, "figure_every=0 must be >= 1"),
    ({"background": "yes"}, r"background='yes': use true, false or auto"),
])
def test_bad_options_fail_at_construction(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ActivationID(**kwargs)


def test_background_estimates_equal_in_line_ones_and_keep_the_figure_cadence(tmp_path: Path) -> None:
    """background=true (a worker thread; on CUDA also its own stream) gives the same rows, metrics and figures."""
    seen: dict[bool, tuple] = {}
    for background in (False, True):
        folder = tmp_path / str(background)
        drawn: list[int] = []
        logged: list[tuple[int, dict]] = []
        logger = SimpleNamespace(log_metrics=lambda metrics, step, _l=logged: _l.append((step, metrics)),
                                 experiment=SimpleNamespace(add_figure=lambda tag, fig, step, _d=drawn: _d.append(step)))
        torch.manual_seed(0)
        pl_module = module()
        callback = ActivationID(num_samples=80, figure_every=2, background=background,
                                estimators=["twonn", {"name": "id_scaling", "range_max": 8}])
        callback.setup(fake_trainer(folder), pl_module, "fit")
        callback.on_train_start(fake_trainer(folder), pl_module)
        assert (callback.worker is not None) == background
        for step in range(4):
            trainer = fake_trainer(folder, step=step)
            trainer.loggers = [logger]
            with torch.no_grad():
                pl_module.net.head.weight.mul_(1.5)  # the network moves between measurements
            callback.measure(trainer, pl_module)
        callback.on_train_end(trainer, pl_module)
        callback.teardown(trainer, pl_module, "fit")
        seen[background] = (read_csv(folder / "id.csv"), logged, sorted(drawn), trainer.callback_metrics)
    assert seen[True][0] == seen[False][0] and len(seen[True][0]) > 0
    assert seen[True][1] == seen[False][1] and [s for s, _ in seen[True][1]] == [0, 1, 2, 3]
    # three figures (ID vs depth, ID vs scale of two layers) at every 2nd measurement, then the undrawn last one
    assert seen[True][2] == seen[False][2] == [0] * 3 + [2] * 3 + [3] * 3
    assert seen[True][3].keys() == seen[False][3].keys()


def test_a_checkpoint_waits_for_the_measurement_in_flight(tmp_path: Path, monkeypatch) -> None:
    """state_dict (what a checkpoint stores) finishes and writes the pending measurement before naming its step."""
    import threading

    release = threading.Event()
    search = activation_id.distinct_search

    def slow_search(*args, **kwargs):
        release.wait(5)
        return search(*args, **kwargs)

    monkeypatch.setattr(activation_id, "distinct_search", slow_search)
    trainer, pl_module = fake_trainer(tmp_path, step=5), module()
    callback = ActivationID(num_samples=60, background=True)
    callback.setup(trainer, pl_module, "fit")
    callback.on_train_start(trainer, pl_module)
    callback.measure(trainer, pl_module)
    callback.settle(wait=False)
    assert not (tmp_path / "id.csv").exists(), "still in flight: nothing written yet"
    release.set()
    assert callback.state_dict() == {"last_step": 5}
    assert [r.step for r in read_csv(tmp_path / "id.csv")] == [5, 5]
    callback.teardown(trainer, pl_module, "fit")


def test_a_failure_in_the_background_is_raised_in_the_training_thread(tmp_path: Path) -> None:
    trainer, pl_module = fake_trainer(tmp_path, step=3), module()
    trainer.datamodule.x[:] = 1.0  # every probe point identical: no distinct neighbours
    callback = ActivationID(num_samples=60, background=True)
    callback.setup(trainer, pl_module, "fit")
    callback.on_train_start(trainer, pl_module)
    callback.measure(trainer, pl_module)
    with pytest.raises(ValueError, match=r"ActivationID at step 3, val probe, layer 'blocks.0'"):
        callback.settle(wait=True)
    callback.teardown(trainer, pl_module, "fit")


def record_pass(net: nn.Module, probe_x: torch.Tensor, index: torch.Tensor | None, batches: list[torch.Tensor],
                twice: bool = False) -> PassRecording:
    """Run `net` over the batches under a PassRecording of its blocks, the way Lightning's validation would."""
    recording = PassRecording(net, ["blocks.0", "blocks.1"], probe_x, index, 300)
    with evaluation(net):
        for batch in batches:
            net(batch)
            if twice:
                net(batch)
            recording.batch_end(batch)
    return recording


def test_a_recorded_pass_is_the_probes_forward_in_probe_order_or_nothing() -> None:
    net, x = TinyNet(), FakeData().x
    index = torch.randperm(300, generator=torch.Generator().manual_seed(3))[:50]
    with evaluation(net):
        own = collect_activations(net, net, ["blocks.0", "blocks.1"], x[index], 64, torch.device("cpu"))
    got = record_pass(net, x[index], index, list(x.split(128))).close()
    assert got is not None and all(torch.allclose(got[n], own[n], atol=1e-6) for n in own)
    whole = record_pass(net, x, None, list(x.split(100))).close()
    assert whole is not None and whole["blocks.1"].shape == (300, 8)

    other = record_pass(net, x, None, list(torch.randn(300, 6).split(100)))
    assert other.close() is None and "not the probe's inputs" in other.why
    shuffled = record_pass(net, x[index], index, list(x.flip(0).split(100)))
    assert shuffled.close() is None and "not the probe's inputs" in shuffled.why
    partial = record_pass(net, x, None, list(x[:200].split(100)))
    assert partial.close() is None and "covered 200 of the split's 300 rows" in partial.why
    repeated = record_pass(net, x, None, list(x.split(100)), twice=True)
    assert repeated.close() is None and "did not run exactly once" in repeated.why
    assert not net.blocks[0]._forward_hooks  # the hooks are gone
