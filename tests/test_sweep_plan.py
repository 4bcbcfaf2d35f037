"""Sweep block validation, run planning, run identity and the DDP guard (no training)."""
from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from idlab.sweep.arguments import apply_sweep_overrides, split_sweep_overrides
from idlab.sweep.guard import check_single_process_jobs, processes_per_job
from idlab.sweep.identity import run_key
from idlab.sweep.plan import BASELINE, POINT, check_base_overrides, grid_runs
from idlab.sweep.spec import SweepConfigError, SweepSpec

BLOCK = {"param": "adapt.d", "values": [400, 100, 200, 100], "seeds": [0, 1], "metric": "test/acc",
         "baseline": "full", "threshold": 0.9, "overrides": ["trainer.max_epochs=3"]}


def test_spec_sorts_and_deduplicates_values_and_keeps_defaults() -> None:
    spec = SweepSpec.from_dict(BLOCK)
    assert spec.values == (100, 200, 400) and spec.integer
    assert spec.search == "grid" and spec.seed_key == "seed" and spec.baseline_is_measured
    assert SweepSpec.from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize("block, fragment", [
    (None, "no sweep block"),
    ({}, "no sweep block"),
    ({"values": [1, 2]}, "sweep.param is missing"),
    ({"param": "adapt.d"}, "sweep.values=None"),
    ({"param": "adapt.d", "values": []}, "non-empty list"),
    ({"param": "adapt.d", "values": [100, -5]}, "positive finite"),
    ({"param": "adapt.d", "values": ["big"]}, "'big'"),
    ({"param": "adapt.d", "values": [1], "seeds": []}, "sweep.seeds"),
    ({"param": "adapt.d", "values": [1], "baseline": "best"}, "sweep.baseline='best'"),
    ({"param": "adapt.d", "values": [1], "threshold": 90}, "sweep.threshold=90"),
    ({"param": "adapt.d", "values": [1], "search": "random"}, "sweep.search='random'"),
    ({"param": "adapt.d", "values": [1], "valuez": [1]}, "unknown sweep key"),
])
def test_bad_sweep_blocks_are_rejected_with_the_key_and_the_fix(block: dict | None, fragment: str) -> None:
    with pytest.raises(SweepConfigError, match=None) as info:
        SweepSpec.from_dict(block)
    assert fragment in str(info.value)


def test_bisect_needs_a_range() -> None:
    with pytest.raises(SweepConfigError, match="bisect"):
        SweepSpec.from_dict({"param": "adapt.d", "values": [100], "search": "bisect"})


def test_grid_plan_has_baseline_seeds_then_values_times_seeds() -> None:
    spec = SweepSpec.from_dict(BLOCK)
    runs = grid_runs(spec, ["+exp=mnist_fc"])
    assert [r.role for r in runs] == [BASELINE] * 2 + [POINT] * 6
    assert runs[0].overrides == ("+exp=mnist_fc", "trainer.max_epochs=3", "adapt=full", "seed=0")
    assert runs[2].overrides == ("+exp=mnist_fc", "trainer.max_epochs=3", "adapt.d=100", "seed=0")
    assert {(r.value, r.seed) for r in runs[2:]} == {(v, s) for v in (100, 200, 400) for s in (0, 1)}
    given = SweepSpec.from_dict({**BLOCK, "baseline": 0.98})
    assert all(r.role == POINT for r in grid_runs(given, []))


def test_command_line_may_not_set_the_swept_key_or_the_seed() -> None:
    spec = SweepSpec.from_dict(BLOCK)
    with pytest.raises(SweepConfigError, match="adapt.d"):
        check_base_overrides(spec, ["+exp=x", "adapt.d=50"])
    with pytest.raises(SweepConfigError, match="seed"):
        check_base_overrides(spec, ["seed=3"])


def test_sweep_overrides_are_split_off_and_applied_to_the_block() -> None:
    sweep, rest = split_sweep_overrides(["+exp=a", "sweep.search=bisect", "hydra/launcher=joblib",
                                         "sweep.values=[5,50]", "~sweep.threshold"])
    assert rest == ["+exp=a", "hydra/launcher=joblib"]
    block = apply_sweep_overrides(OmegaConf.create(BLOCK), sweep)
    assert block["search"] == "bisect" and block["values"] == [5, 50] and "threshold" not in block
    with pytest.raises(SweepConfigError, match="-m"):
        split_sweep_overrides(["-m", "+exp=a"])


def test_run_key_ignores_paths_hydra_and_sweep_but_not_training_settings() -> None:
    base = {"seed": 0, "adapt": {"d": 100}, "paths": {"output_dir": "/a/runs/0"},
            "callbacks": {"ckpt": {"dirpath": "${paths.output_dir}/checkpoints"}},
            "hydra": {"job": {"num": 0}}, "sweep": {"values": [1, 2]}, "name": "${now:%H-%M-%S-%f}"}
    moved = {**base, "paths": {"output_dir": "/b/runs/7"}, "hydra": {"job": {"num": 7}},
             "sweep": {"values": [1, 2, 3]}}
    assert run_key(OmegaConf.create(base)) == run_key(OmegaConf.create(moved))
    assert run_key(OmegaConf.create(base)) != run_key(OmegaConf.create({**base, "seed": 1}))
    assert run_key(OmegaConf.create(base)) != run_key(OmegaConf.create({**base, "adapt": {"d": 101}}))
    # Interpolations are compared by value: an alias that resolves to the same number is the same run.
    aliased = {**base, "d_value": 100, "adapt": {"d": "${d_value}"}}
    plain = {**base, "d_value": 100}
    assert run_key(OmegaConf.create(aliased)) == run_key(OmegaConf.create(plain))


def test_run_key_changes_with_the_results_version_so_old_runs_are_never_reused(monkeypatch) -> None:
    import idlab.sweep.identity as identity

    cfg = OmegaConf.create({"seed": 0, "adapt": {"d": 100}})
    before = run_key(cfg)
    monkeypatch.setattr(identity, "RESULTS_VERSION", identity.RESULTS_VERSION + 1)
    assert run_key(cfg) != before


def _master(trainer: dict, launcher: dict) -> OmegaConf:
    return OmegaConf.create({"trainer": trainer, "hydra": {"launcher": launcher}})


BASIC = {"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"}
JOBLIB = {"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", "n_jobs": 4}
SLURM = {"_target_": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher",
         "tasks_per_node": 1, "nodes": 1}


def test_processes_per_job_reads_lightning_device_settings() -> None:
    assert processes_per_job({"devices": 1}) == 1
    assert processes_per_job({"devices": 4, "num_nodes": 2}) == 8
    assert processes_per_job({"devices": [0, 1]}) == 2
    assert processes_per_job({"devices": "0,1,2"}) == 3
    assert processes_per_job({"devices": "auto", "accelerator": "cpu"}) == 1


@pytest.mark.parametrize("launcher", [BASIC, JOBLIB, SLURM])
def test_ddp_inside_a_sweep_is_refused_unless_submitit_starts_the_ranks(launcher: dict) -> None:
    ddp = {"devices": 2, "strategy": "ddp", "accelerator": "gpu"}
    with pytest.raises(SweepConfigError, match="tasks_per_node=2"):
        check_single_process_jobs(_master(ddp, launcher))
    check_single_process_jobs(_master({"devices": 1, "accelerator": "gpu"}, launcher))


def test_ddp_through_submitit_with_one_task_per_device_is_allowed() -> None:
    check_single_process_jobs(_master({"devices": 2, "strategy": "ddp"}, {**SLURM, "tasks_per_node": 2}))


@pytest.fixture
def session(tmp_path):
    """A HydraSession on the project's configs (Li's FC grid in a Fastfood subspace)."""
    from pathlib import Path

    from hydra import initialize_config_dir

    from idlab.sweep.launch import HydraSession

    configs = Path(__file__).resolve().parents[1] / "configs"
    with initialize_config_dir(config_dir=str(configs), version_base="1.3", job_name="train"):
        yield HydraSession("train", ["data=mnist_mini", "model=fc", "adapt=subspace", "trainer.max_epochs=2"],
                           tmp_path / "runs")


def test_derived_job_configs_equal_full_compositions(session) -> None:
    """Runs differing in plain values are derived from one composition; each equals Hydra's own (hydra node too)."""
    base = ["data=mnist_mini", "model=fc", "adapt=subspace", "trainer.max_epochs=2"]
    runs = [base + [f"adapt.d={d}", f"seed={s}"] for d in (10, 300, 4000) for s in (0, 1)]
    runs += [base + ["adapt=full", f"seed={s}"] for s in (0, 1, 2)]
    runs += [run + ["logger.tensorboard.name='li/d=10'", "logger.tensorboard.version='seed=0'"] for run in runs[:3]]
    configs = [session.job_config(run) for run in runs]
    assert session.composed == 3 * 2, "three shapes: each composed for its first run and to check its second"
    for run, cfg in zip(runs, configs):
        assert OmegaConf.to_container(cfg) == OmegaConf.to_container(session._compose(run)), run
    assert configs[0].adapt.d == 10 and configs[5].adapt.d == 4000 and configs[5].seed == 1
    assert configs[5].hydra.overrides.task[-2:] == ["adapt.d=4000", "seed=1"]
    assert "adapt.d=4000" in configs[5].hydra.job.override_dirname


def test_a_shape_whose_derivation_differs_is_always_composed(session, monkeypatch) -> None:
    base = ["data=mnist_mini", "model=fc", "adapt=subspace", "trainer.max_epochs=2"]
    derive = session._derive

    def off_by_one(template, parsed):
        cfg = derive(template, parsed)
        cfg.adapt.d += 1
        return cfg
    monkeypatch.setattr(session, "_derive", off_by_one)
    configs = [session.job_config(base + [f"adapt.d={d}"]) for d in (10, 20, 30, 40)]
    assert [c.adapt.d for c in configs] == [10, 20, 30, 40] and session.composed == 4
