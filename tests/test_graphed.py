"""The graph path (training/graphed.py) run without capture on the CPU (graph.mode=emulate) equals Lightning's
eager loop bit for bit: weights, optimiser and scheduler state, loop counters, metrics, snapshots, resume and
the step a NaN is reported at. Capture itself needs a GPU: bench/graph_check.py compares it there."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from idlab.data.batches import IndexBatchSampler
from idlab.data.chunks import ChunkPlan, ChunkSampler
from idlab.run import train
from idlab.training.graphed import Cadence, GraphCaptureError, GraphPolicy, split_steps

# Whole epochs (chunking needs no batch limit) of 32 steps on mnist_mini; chunks of ≤ 8 steps, logs every 5.
COMMON = ["trainer.limit_train_batches=null", "trainer.limit_val_batches=1", "graph.steps_per_batch=8",
          "trainer.log_every_n_steps=5"]
CASES = {
    "fc adam": ["model.width=16", "trainer.max_epochs=2"],
    "fastfood, warmup + cosine": ["model.width=16", "adapt=subspace", "adapt.d=64", "optim.schedule.warmup_steps=7",
                                  "optim.schedule.decay=cosine", "trainer.max_epochs=2"],
    "sparse, sgd nesterov, clip norm": ["model.width=16", "adapt=subspace", "adapt.projection=sparse", "adapt.d=50",
                                        "optim=sgd", "optim.optimizer.lr=0.05", "trainer.gradient_clip_val=0.5"],
    "dense, adamw, clip value": ["model.width=16", "adapt=subspace", "adapt.projection=dense", "adapt.d=20",
                                 "optim=adamw", "trainer.gradient_clip_val=0.1",
                                 "+trainer.gradient_clip_algorithm=value"],
    "lora lenet": ["model=lenet", "adapt=lora", "adapt.r=2"],
    "transformer, max_steps": ["+exp=math_equations", "data.p=23", "trainer.max_epochs=-1", "trainer.max_steps=13",
                               "data.batch_size=64", "model.width=16"],
}


def fit(make_cfg, mode: str, *extra: str, run: str) -> tuple[dict, dict, Path]:
    """Train; return metrics, the last checkpoint and the run folder."""
    cfg = make_cfg(*COMMON, f"graph.mode={mode}", *extra, run=run)
    metrics = train(cfg)
    out = Path(cfg.paths.output_dir)
    return metrics, torch.load(out / "checkpoints" / "last.ckpt", weights_only=True), out


def flat(tree, prefix: str = "") -> dict:
    """Leaves of a nested checkpoint by path."""
    if isinstance(tree, dict):
        return {k: v for key, sub in tree.items() for k, v in flat(sub, f"{prefix}/{key}").items()}
    if isinstance(tree, (list, tuple)):
        return {k: v for i, sub in enumerate(tree) for k, v in flat(sub, f"{prefix}/{i}").items()}
    return {prefix: tree}


def assert_same_checkpoint(a: dict, b: dict) -> None:
    """Equal leaf by leaf (tensors bitwise) except the callbacks' own folder paths."""
    fa, fb = flat(a), flat(b)
    keys = {k for k in fa.keys() | fb.keys() if not k.startswith("/callbacks/")}
    for key in sorted(keys):
        va, vb = fa.get(key), fb.get(key)
        same = torch.equal(va, vb) if isinstance(va, torch.Tensor) and isinstance(vb, torch.Tensor) else va == vb
        assert same, f"{key}: {va} != {vb}"


@pytest.mark.parametrize("case", sorted(CASES))
def test_graph_path_equals_eager_loop(case: str, make_cfg, one_thread) -> None:
    eager, eager_ckpt, _ = fit(make_cfg, "off", *CASES[case], run="eager")
    graph, graph_ckpt, _ = fit(make_cfg, "emulate", *CASES[case], run="graph")
    assert_same_checkpoint(eager_ckpt, graph_ckpt)
    assert graph.keys() == eager.keys()
    for key, value in eager.items():
        assert graph[key] == pytest.approx(value, rel=1e-6), key  # epoch means summed per chunk: rounding only


def test_augmented_batches_equal_eager_loop(make_cfg, cifar_dir, one_thread) -> None:
    data = ["data=cifar10", f"data.data_dir={cifar_dir(10)}", "data.val_size=20", "model=resnet",
            "model.variant=resnet20", "model.width=4", "data.batch_size=16"]
    _, eager, _ = fit(make_cfg, "off", *data, run="eager")
    _, graph, _ = fit(make_cfg, "emulate", *data, run="graph")
    assert_same_checkpoint(eager, graph)


def test_snapshots_inside_a_chunk_are_taken_at_their_step(make_cfg, one_thread) -> None:
    extra = ["model.width=16", "callbacks=snapshots", "callbacks.snapshots.steps=[0,11,37]", "trainer.max_epochs=2"]
    _, _, eager = fit(make_cfg, "off", *extra, run="eager")
    _, _, graph = fit(make_cfg, "emulate", *extra, run="graph")
    for step in (0, 11, 37):
        a, b = (torch.load(d / "snapshots" / f"step{step:06d}.ckpt", weights_only=True) for d in (eager, graph))
        assert a["global_step"] == b["global_step"] == step
        assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])


@pytest.mark.parametrize("resume_mode", ["emulate", "off"])
def test_resume_from_graph_checkpoint_equals_uninterrupted(resume_mode: str, make_cfg, one_thread) -> None:
    extra = ["model.width=16", "test=false"]
    full, full_ckpt, _ = fit(make_cfg, "emulate", *extra, "trainer.max_epochs=3", run="full")
    _, _, killed = fit(make_cfg, "emulate", *extra, "trainer.max_epochs=2", run="killed")
    resumed, resumed_ckpt, _ = fit(make_cfg, resume_mode, *extra, "trainer.max_epochs=3",
                                   f"ckpt_path={killed / 'checkpoints' / 'last.ckpt'}", run="resumed")
    assert resumed["global_step"] == full["global_step"] == 96
    assert_same_checkpoint(full_ckpt, resumed_ckpt)


def test_nonfinite_loss_stops_at_the_same_step_as_eager(make_cfg, one_thread) -> None:
    extra = ["model.width=16", "optim=sgd", "optim.optimizer.lr=1e12", "trainer.max_epochs=3"]
    results = {mode: train(make_cfg(*COMMON, f"graph.mode={mode}", *extra, run=mode)) for mode in ("off", "emulate")}
    assert results["off"]["diverged"] and results["emulate"]["diverged"]
    assert results["off"]["diverged_step"] == results["emulate"]["diverged_step"]
    # the chunked path learns of a bad loss a chunk late, so it may have run more steps (global_step) — but it
    # names the same first bad step and reports the same last good state
    same = lambda m: {k: v for k, v in m.items() if k not in ("code", "global_step")}  # noqa: E731
    assert same(results["off"]) == same(results["emulate"]), "the same diverged result either way"


def test_insisting_on_capture_without_a_gpu_fails_before_training(make_cfg) -> None:
    cfg = make_cfg("graph.mode=on")
    with pytest.raises(GraphCaptureError, match="training device is cpu"):
        train(cfg)
    assert not (Path(cfg.paths.output_dir) / "checkpoints").exists()


def test_auto_on_cpu_trains_eagerly_and_says_so_once(make_cfg, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="idlab.training.graphed"):
        metrics = train(make_cfg("graph.mode=auto", "model.width=16"))
    lines = [r.getMessage() for r in caplog.records if r.name == "idlab.training.graphed"]
    assert len(lines) == 1 and "eagerly" in lines[0] and "cpu" in lines[0]
    assert metrics["global_step"] == 4


class EveryBatch(pl.Callback):
    """A callback the graph path knows nothing about that counts training batches."""

    last: "EveryBatch | None" = None

    def __init__(self) -> None:
        self.batches = 0
        EveryBatch.last = self

    def on_train_batch_end(self, *args) -> None:
        self.batches += 1


class InsideStep(pl.Callback):
    """A callback that needs the eager optimiser step."""

    def on_after_backward(self, trainer, pl_module) -> None:
        pass


def test_unknown_batch_callback_gets_one_step_per_batch(make_cfg, caplog, one_thread) -> None:
    cfg = make_cfg(*COMMON, "graph.mode=emulate", "model.width=16", "+callbacks.count._target_=test_graphed.EveryBatch")
    with caplog.at_level(logging.INFO, logger="idlab.training.graphed"):
        metrics = train(cfg)
    assert EveryBatch.last.batches == metrics["global_step"] == 32
    assert any("up to 1 per Lightning batch" in r.getMessage() and "EveryBatch" in r.getMessage()
               for r in caplog.records)


def test_callback_inside_the_step_means_eager_steps(make_cfg, caplog) -> None:
    cfg = make_cfg("graph.mode=emulate", "model.width=16", "+callbacks.inside._target_=test_graphed.InsideStep")
    with caplog.at_level(logging.INFO, logger="idlab.training.graphed"):
        train(cfg)
    assert any("InsideStep acts inside the optimiser step" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("kwargs,match", [({"mode": "sometimes"}, "graph.mode"), ({"steps_per_batch": 0}, "steps_per"),
                                          ({"warmup_steps": 0}, "warmup_steps")])
def test_bad_graph_settings_are_named(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        GraphPolicy(**kwargs)


def test_chunks_end_where_loggers_and_callbacks_act() -> None:
    cadence = Cadence(every={20}, steps={13}, log_every=5, max_steps=30, last=31)
    lengths = split_steps(0, 32, 8, cadence)
    ends = [sum(lengths[: i + 1]) for i in range(len(lengths))]
    assert sum(lengths) == 32 and max(lengths) <= 8
    assert {4, 5, 9, 10, 13, 14, 15, 19, 20, 24, 25, 29, 30, 31, 32} <= set(ends) | {0}  # batch starts
    assert [ends[i + 1] - ends[i] for i in range(len(ends) - 1) if ends[i] % 5 == 4] == \
           [1] * sum(1 for e in ends[:-1] if e % 5 == 4), "a step ≡ n-1 (mod n) runs alone"
    assert lengths[-1] == 1, "the run's last step runs alone"


def test_chunk_sampler_regroups_the_same_batches() -> None:
    class Plan(ChunkPlan):
        def position(self):
            return 100, 0

        def split(self, start, count):
            return split_steps(start, count, 3, Cadence(log_every=4))

    batches = IndexBatchSampler(50, 8, shuffle=True, seed=3)
    batches.set_epoch(2)
    sampler = ChunkSampler(batches, Plan(), pin=False)
    sampler.set_epoch(2)
    chunks = list(sampler)
    rows = [(row[:size], seed) for c in chunks for row, size, seed in zip(c.index, c.sizes, c.seeds)]
    expected = list(batches)
    assert len(sampler) == len(expected) == sum(c.steps for c in chunks)
    assert [c.start for c in chunks] == [100 + sum(c.steps for c in chunks[:i]) for i in range(len(chunks))]
    assert all(torch.equal(a, b) and s == t for (a, s), (b, t) in zip(rows, expected))


class AtStep(pl.Callback):
    """A per-batch callback that names the one step it acts on (`graph_steps`), so chunking stays on."""

    last: "AtStep | None" = None

    def __init__(self) -> None:
        self.graph_steps, self.ends = (7,), []
        AtStep.last = self

    def on_train_batch_end(self, trainer, *args) -> None:
        self.ends.append(trainer.global_step)


def test_a_callback_naming_its_steps_keeps_chunks_and_sees_them(make_cfg, one_thread) -> None:
    train(make_cfg(*COMMON, "graph.mode=emulate", "model.width=16", "+callbacks.at._target_=test_graphed.AtStep"))
    ends = AtStep.last.ends
    assert 7 in ends and ends[-1] == 32 and len(ends) < 32
