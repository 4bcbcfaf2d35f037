"""Tensorboard as the dashboard: every run's HParams session, runs named by what they are, the sweep's columns."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer
from tensorboard.plugins.hparams import api_pb2, metadata

from idlab.run import train
from idlab.sweep.driver import run_sweep
from idlab.sweep.records import RECORD_FILE, RUNS_DIR
from idlab.sweep.report import d_int_line

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
TINY = ["trainer=cpu", "trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1", "trainer.num_sanity_val_steps=0", "++callbacks.progress_bar=null",
        "+trainer.enable_progress_bar=false", "data=mnist", "data.val_size=50", "data.on_device=false",
        "model.depth=1", "model.width=16", "adapt=subspace"]
D_SWEEP = ["sweep.param=adapt.d", "sweep.values=[8,32]", "sweep.seeds=[0]", "sweep.metric=test/acc"]


def read_logdir(logdir: Path) -> tuple[EventMultiplexer, dict[str, dict[str, bytes]]]:
    """What tensorboard reads from `logdir`: its runs (named by folder) and their HParams summaries."""
    reader = EventMultiplexer()
    reader.AddRunsFromDirectory(str(logdir))
    reader.Reload()
    return reader, reader.PluginRunToTagToContent(metadata.PLUGIN_NAME)


def sessions(hparams_content: dict[str, dict[str, bytes]]) -> dict[str, dict]:
    """run → {hparams, group, status} of every run that has an HParams session."""
    out = {}
    for run, tags in hparams_content.items():
        if metadata.SESSION_START_INFO_TAG in tags:
            start = metadata.parse_session_start_info_plugin_data(tags[metadata.SESSION_START_INFO_TAG])
            end = metadata.parse_session_end_info_plugin_data(tags[metadata.SESSION_END_INFO_TAG])
            values = {k: v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind")) for k, v in start.hparams.items()}
            out[run] = {"hparams": values, "group": start.group_name, "status": end.status}
    return out


@pytest.fixture(autouse=True)
def small_mnist(mnist_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs read the fixture's small MNIST (paths.data_dir comes from $IDLAB_DATA_DIR, also in launched jobs)."""
    monkeypatch.setenv("IDLAB_DATA_DIR", str(mnist_dir))
    GlobalHydra.instance().clear()


def test_a_sweep_names_its_runs_and_gives_the_hparams_tab_every_run(tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    summary = run_sweep(CONFIG_DIR, [*TINY, *D_SWEEP, f"sweep.dir={out}"])
    assert summary["runs"]["done"] == 3, summary["failed"]
    reader, content = read_logdir(out / "tensorboard")
    names = {"baseline/seed=0", "adapt.d=8/seed=0", "adapt.d=32/seed=0"}
    assert set(reader.Runs()) == names | {"sweep"}, "runs read as role or swept value and seed, plus the report"
    found = sessions(content)
    assert set(found) == names, "every training run has an HParams session; the report run has none"
    for name, d in (("adapt.d=8/seed=0", 8), ("adapt.d=32/seed=0", 32)):
        hparams = found[name]["hparams"]
        assert hparams["adapt.d"] == d and hparams["seed"] == 0 and hparams["adapt"] == "subspace"
        assert hparams["params/trainable"] == d and hparams["optim.optimizer.lr"] == pytest.approx(1e-2)
        assert hparams["model"] == "fc" and hparams["data"] == "mnist"
        assert hparams["trainer"] == "cpu" and hparams["trainer.max_epochs"] == 1, "command-line overrides too"
        assert found[name]["group"] == name and found[name]["status"] == api_pb2.STATUS_SUCCESS
    base = found["baseline/seed=0"]["hparams"]
    assert base["adapt"] == "full" and "adapt.d" not in base and base["params/trainable"] > 32
    assert base["optim.optimizer.lr"] == pytest.approx(1e-3), "adapt=full keeps the optimizer's own step size"
    # The final metrics are scalars of each run (what the HParams table shows), equal to metrics.json.
    for run_dir in (out / RUNS_DIR).iterdir():
        metrics = json.loads((run_dir / "metrics.json").read_text())
        logger = OmegaConf.load(run_dir / ".hydra" / "config.yaml").logger.tensorboard
        name = f"{logger.name}/{logger.version}"
        assert Path(logger.save_dir) == out / "tensorboard" and name in names, "the run's config says where it is"
        assert reader.Scalars(name, "test/acc")[-1].value == pytest.approx(metrics["test/acc"], abs=1e-6)
        assert reader.Scalars(name, "best/val/acc")[-1].value == pytest.approx(metrics["best/val/acc"], abs=1e-6)
        assert "hp_metric" not in reader.GetAccumulator(name).Tags()["scalars"], "Lightning's placeholder is off"
        assert not (run_dir / "tensorboard").exists(), "a sweep run's events live under its name only"
    # The report's run holds the sweep's columns: the swept key marked as differing, the sweep's metric first.
    experiment = metadata.parse_experiment_plugin_data(content["sweep"][metadata.EXPERIMENT_TAG])
    infos = {i.name: i for i in experiment.hparam_infos}
    assert infos["adapt.d"].differs and infos["adapt"].differs and not infos["data"].differs
    assert {v.string_value for v in infos["adapt"].domain_discrete.values} == {"full", "subspace"}
    assert experiment.metric_infos[0].name.tag == "test/acc"
    assert {m.name.tag for m in experiment.metric_infos} >= {"val/acc", "test/loss", "best/val/acc"}
    assert not any(metadata.EXPERIMENT_TAG in content[n] for n in names), "one experiment summary, the sweep's"
    text = reader.Tensors("sweep", "sweep/summary/text_summary")[0].tensor_proto.string_val[0].decode()
    assert text.splitlines()[0] == d_int_line(summary) and "d_int90 = " in text.splitlines()[0]

    # A rerun launches nothing and changes no name; a failed run is rerun under its name, and the failed
    # attempt's events move into its own run folder.
    GlobalHydra.instance().clear()
    run_sweep(CONFIG_DIR, [*TINY, *D_SWEEP, f"sweep.dir={out}"])
    assert set(read_logdir(out / "tensorboard")[0].Runs()) == names | {"sweep"}
    victim = next(p for p in (out / RUNS_DIR).iterdir() if "adapt.d=32\n" in (p / ".hydra/overrides.yaml").read_text())
    old_events = {p.name for p in (out / "tensorboard" / "adapt.d=32" / "seed=0").glob("events.out.tfevents.*")}
    (victim / "metrics.json").unlink()
    record = json.loads((victim / RECORD_FILE).read_text())
    (victim / RECORD_FILE).write_text(json.dumps({**record, "status": "failed", "error": "killed"}))
    GlobalHydra.instance().clear()
    assert run_sweep(CONFIG_DIR, [*TINY, *D_SWEEP, f"sweep.dir={out}"])["runs"]["done"] == 3
    reader, content = read_logdir(out / "tensorboard")
    assert set(reader.Runs()) == names | {"sweep"} and set(sessions(content)) == names
    assert {p.name for p in (victim / "tensorboard").glob("events.out.tfevents.*")} == old_events
    new_events = {p.name for p in (out / "tensorboard" / "adapt.d=32" / "seed=0").glob("events.out.tfevents.*")}
    assert new_events and not new_events & old_events

    # A changed training setting trains every run again under the same names; the earlier config's runs take
    # their events into their own folders.
    before = {p for p in (out / RUNS_DIR).iterdir() if (p / "metrics.json").is_file()}
    GlobalHydra.instance().clear()
    run_sweep(CONFIG_DIR, [*TINY, "trainer.limit_val_batches=2", *D_SWEEP, f"sweep.dir={out}"])
    reader, content = read_logdir(out / "tensorboard")
    assert set(reader.Runs()) == names | {"sweep"}
    assert all(s["hparams"]["trainer.limit_val_batches"] == 2 for s in sessions(content).values())
    assert all(list((p / "tensorboard").glob("events.out.tfevents.*")) for p in before)


def test_a_plain_run_logs_its_hparams_session(make_cfg) -> None:
    cfg = make_cfg("data=mnist_mini", "model.width=16", "adapt=subspace", "adapt.d=20", "logger=tensorboard_csv")
    metrics = train(cfg)
    run = Path(cfg.paths.output_dir)
    reader, content = read_logdir(run)
    assert set(reader.Runs()) == {"tensorboard"}
    found = sessions(content)["tensorboard"]
    assert found["group"] == f"{run.name}/tensorboard", "the HParams row is named by the run folder"
    assert found["hparams"] == {**found["hparams"], "adapt": "subspace", "adapt.d": 20, "adapt.projection": "fastfood",
                                "params/trainable": 20, "seed": 0, "model": "fc", "data": "mnistmini"}
    assert reader.Scalars("tensorboard", "test/acc")[-1].value == pytest.approx(metrics["test/acc"], abs=1e-6)
    assert metadata.EXPERIMENT_TAG not in content["tensorboard"]
    assert "hp_metric" not in reader.GetAccumulator("tensorboard").Tags()["scalars"]
    assert (run / "csv" / "metrics.csv").is_file()


@pytest.mark.parametrize("logger", ["csv", "none"])
def test_runs_without_tensorboard_write_no_events(make_cfg, logger: str) -> None:
    cfg = make_cfg("data=mnist_mini", "model.width=16", f"logger={logger}")
    train(cfg)
    run = Path(cfg.paths.output_dir)
    assert (run / "metrics.json").is_file() and not list(run.rglob("events.out.tfevents.*"))


def test_d_int_line_gives_each_d_int_with_its_ci() -> None:
    summary = {"param": "adapt.d", "metric": "test/acc",
               "d_int90": {"value": 300, "ci95": [100, 500], "target": 0.8},
               "d_int100": {"value": None, "ci95": [2000, None], "target": 0.9}}
    assert d_int_line(summary) == ("**d_int90 = 300 (95% CI 100–500) · d_int100 = not reached "
                                   "(95% CI 2000–not reached)** (test/acc vs adapt.d)")
    summary["d_int100"] = {"value": None, "ci95": [None, None], "target": None}
    assert d_int_line(summary).endswith("· d_int100 = n/a** (test/acc vs adapt.d)"), "no baseline yet: no CI"
