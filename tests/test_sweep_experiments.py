"""Every shipped experiment with a sweep block plans and passes the pre-launch model check (dry run, no training)."""
from __future__ import annotations

from pathlib import Path

import pytest
from hydra.core.global_hydra import GlobalHydra

from conftest import model_checkpoint
from idlab.sweep.driver import run_sweep
from idlab.sweep.records import RUNS_DIR

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
SWEEP_EXPERIMENTS = sorted(p.stem for p in (CONFIG_DIR / "exp").glob("*.yaml") if "\nsweep:" in p.read_text())


@pytest.mark.parametrize("exp", SWEEP_EXPERIMENTS)
def test_every_shipped_sweep_experiment_plans_and_validates(exp: str, tmp_path: Path) -> None:
    overrides = [f"+exp={exp}", "sweep.seeds=[0]", f"sweep.dir={tmp_path / exp}"]
    if "pretrained: ???" in (CONFIG_DIR / "exp" / f"{exp}.yaml").read_text():
        checkpoint = model_checkpoint([f"+exp={exp}", "pretrained=null"], tmp_path / "pretrained.ckpt")
        overrides.append(f"pretrained={checkpoint}")
    GlobalHydra.instance().clear()
    # One seed keeps the dry run cheap; the baseline and every value are still composed and keyed.
    summary = run_sweep(CONFIG_DIR, overrides, dry_run=True)
    spec = summary["spec"]
    baselines = 1 if spec["baseline"] == "full" else 0
    points = len(spec["values"]) if spec["search"] == "grid" else spec["points_per_round"] + 1
    assert summary["runs"]["planned"] == summary["runs"]["pending"] == baselines + points
    assert not (tmp_path / exp / RUNS_DIR).exists() and not (tmp_path / exp / "plan.json").exists()
