"""ActivationID through idlab.run.train: keys reach tensorboard at the cadence, id.csv, no effect on training."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from idlab.run import train

TINY_FC = ["callbacks=id", "model.width=32", "callbacks.activation_id.num_samples=200"]


def tensorboard_events(run: Path) -> tuple[dict[str, list[int]], list[str]]:
    """{scalar tag: steps} and image tags over every event file of a run folder."""
    scalars: dict[str, list[int]] = {}
    images: list[str] = []
    for folder in sorted({p.parent for p in (run / "tensorboard").rglob("events.out.tfevents.*")}):
        events = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0})
        events.Reload()
        for tag in events.Tags()["scalars"]:
            scalars.setdefault(tag, []).extend(e.step for e in events.Scalars(tag))
        images += events.Tags()["images"]
    return scalars, images


def csv_rows(run: Path) -> list[dict[str, str]]:
    """Rows of the run's id.csv."""
    with open(run / "id.csv", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("background", ["false", "true"])
def test_logged_keys_reach_tensorboard_every_epoch_and_id_csv(make_cfg, background: str) -> None:
    cfg = make_cfg(*TINY_FC, "trainer.max_epochs=2", f"callbacks.activation_id.background={background}")
    run = Path(cfg.paths.output_dir)
    metrics = train(cfg)
    scalars, images = tensorboard_events(run)
    for key in ("id/val/blocks.0", "id/val/blocks.0_std", "id/val/blocks.1", "id/val/llid", "id/val/pid"):
        assert sorted(scalars[key]) == [0, 4, 8], key  # epoch 0 and 1 starts, then the end of training
    assert "id_profile" in images
    rows = csv_rows(run)
    assert [r["step"] for r in rows] == ["0", "0", "4", "4", "8", "8"]
    assert {r["layer"] for r in rows} == {"blocks.0", "blocks.1"} and all(float(r["value"]) > 0 for r in rows)
    saved = json.loads((run / "metrics.json").read_text())
    last = [float(r["value"]) for r in rows if r["step"] == "8"]
    assert saved["id/val/llid"] == pytest.approx(last[1]) and saved["id/val/pid"] == pytest.approx(max(last))
    assert metrics["id/val/llid"] == saved["id/val/llid"]


def test_step_cadence_includes_step_zero(make_cfg) -> None:
    cfg = make_cfg(*TINY_FC, "trainer.max_epochs=-1", "trainer.max_steps=5", "callbacks.activation_id.every_n_steps=2",
                   "callbacks.activation_id.every_n_epochs=null", "callbacks.activation_id.figure=false")
    train(cfg)
    scalars, _ = tensorboard_events(Path(cfg.paths.output_dir))
    assert sorted(scalars["id/val/llid"]) == [0, 2, 4, 5]


def test_measuring_does_not_change_training(make_cfg) -> None:
    """Same seed with and without the callback: bitwise identical weights after training."""
    common = ["model.width=32", "trainer.max_epochs=2"]
    with_id = make_cfg(*common, "callbacks=id", "callbacks.activation_id.num_samples=100", run="with")
    without = make_cfg(*common, run="without")
    train(with_id), train(without)
    weights = [torch.load(Path(c.paths.output_dir) / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
               for c in (with_id, without)]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_grokking_experiment_tracks_attention_mlp_and_the_head_input_on_train_and_val(make_cfg) -> None:
    cfg = make_cfg("+exp=math_equations_id", "data.p=23", "trainer.max_epochs=-1", "trainer.max_steps=3",
                   "callbacks.activation_id.every_n_steps=2")
    train(cfg)
    run = Path(cfg.paths.output_dir)
    scalars, images = tensorboard_events(run)
    layers = ("blocks.0.attn", "blocks.0.mlp", "blocks.1.attn", "blocks.1.mlp")
    for split in ("train", "val"):
        for layer in layers + ("ln_f", "llid", "pid"):
            assert sorted(scalars[f"id/{split}/{layer}"]) == [0, 2, 3]
        # LLID is the ID of the head's input (final norm of the residual stream), not of the last MLP branch.
        assert scalars[f"id/{split}/llid"] == scalars[f"id/{split}/ln_f"]
        for layer in layers:
            assert sorted(scalars[f"overlap/{split}/{layer}"]) == [0, 2, 3]
            for rank in (2, 4, 8, 16, 32, 64):
                assert sorted(scalars[f"id_scaling/{split}/{layer}/n{rank}"]) == [0, 2, 3]
    assert {"id_profile", "overlap_profile"} | {f"id_scaling_vs_scale/{layer}" for layer in layers} <= set(images)
    # id.csv holds each measurement's whole ID-vs-scale curve: a figure can be drawn from it offline
    curve = [r for r in csv_rows(run) if r["step"] == "3" and r["split"] == "val" and r["layer"] == "blocks.1.mlp"
             and r["estimator"].startswith("id_scaling/")]
    assert [r["estimator"] for r in curve] == [f"id_scaling/n{2**i}" for i in range(1, 7)]
    scales = [float(r["scale"]) for r in curve]
    assert scales == sorted(scales) and all(float(r["value"]) > 0 and float(r["std"]) > 0 for r in curve)


def test_layer_names_are_the_architectures_under_lora(make_cfg) -> None:
    cfg = make_cfg(*TINY_FC, "adapt=lora", "adapt.r=2", "trainer.max_epochs=1", "callbacks.activation_id.figure=false")
    train(cfg)
    assert {r["layer"] for r in csv_rows(Path(cfg.paths.output_dir))} == {"blocks.0", "blocks.1"}


def test_unknown_layer_fails_before_training(make_cfg) -> None:
    cfg = make_cfg(*TINY_FC, "callbacks.activation_id.layers=[blocks.*,layer4]")
    with pytest.raises(ValueError, match=r"layer 'layer4' matches no module of FC.*'blocks.0'"):
        train(cfg)
    assert not (Path(cfg.paths.output_dir) / "checkpoints").exists()


@pytest.mark.parametrize("num_samples", ["null", "200"])
def test_the_val_probe_recorded_during_validation_equals_its_own_forward(make_cfg, monkeypatch,
                                                                          num_samples: str) -> None:
    """An epoch-end validation over the whole split serves the next measurement's val probe (whole split or a seeded
    subset, reordered): the same rows as the probe's own forward, without running it."""
    import idlab.callbacks.activation_id as callback

    forwards: list[int] = []
    collect = callback.collect_activations

    def counting(forward, model, names, x, *args, **kwargs):
        if len(x) > 2:  # setup's 2-point layer check is not a probe forward
            forwards.append(len(x))
        return collect(forward, model, names, x, *args, **kwargs)

    monkeypatch.setattr(callback, "collect_activations", counting)
    common = [*TINY_FC, "trainer.max_epochs=3", "trainer.limit_val_batches=1.0", "data.eval_batch_size=128",
              f"callbacks.activation_id.num_samples={num_samples}", "callbacks.activation_id.figure=false",
              "callbacks.activation_id.estimators=[twonn,{name:overlap,k:10}]"]  # label overlap: rows in probe order
    train(make_cfg(*common, "callbacks.activation_id.reuse_validation=false", run="own"))
    own, forwards[:] = list(forwards), []
    train(make_cfg(*common, run="recorded"))
    assert len(own) == 4 and len(forwards) == 1  # epochs 0, 1, 2 and the end; recorded: epoch 0 only
    rows = {name: csv_rows(Path(make_cfg(run=name).paths.output_dir)) for name in ("own", "recorded")}
    key = [(r["step"], r["split"], r["layer"], r["estimator"]) for r in rows["own"]]
    assert key == [(r["step"], r["split"], r["layer"], r["estimator"]) for r in rows["recorded"]]
    assert [r["step"] for r in rows["own"]][-1] == "12"
    for a, b in zip(rows["own"], rows["recorded"]):
        assert float(b["value"]) == pytest.approx(float(a["value"]), rel=1e-4), (a, b)


def test_a_partial_validation_is_not_taken_for_the_probe(make_cfg, monkeypatch) -> None:
    import idlab.callbacks.activation_id as callback

    forwards: list[int] = []
    collect = callback.collect_activations
    monkeypatch.setattr(callback, "collect_activations",
                        lambda forward, model, names, x, *a, **k: forwards.append(len(x)) or
                        collect(forward, model, names, x, *a, **k))
    train(make_cfg(*TINY_FC, "trainer.max_epochs=2", "trainer.limit_val_batches=2",
                   "callbacks.activation_id.figure=false"))
    assert forwards == [2, 200, 200, 200]  # setup's layer check, then epochs 0, 1 and the end
