"""Every shipped experiment with a sweep block plans and passes the pre-launch model check (dry run, no training)."""
from __future__ import annotations

from pathlib import Path

import pytest
from hydra.core.global_hydra import GlobalHydra

from conftest import compose_config, model_checkpoint
from idlab.sweep.driver import run_sweep
from idlab.sweep.records import RUNS_DIR

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
def has_sweep(exp: str) -> bool:
    """Whether an exp file has a sweep block, its own or inherited through `- /exp/NAME` (configs/exp/mini/*)."""
    text = (CONFIG_DIR / "exp" / f"{exp}.yaml").read_text()
    parents = [line.split("/exp/", 1)[1].strip() for line in text.splitlines() if line.strip().startswith("- /exp/")]
    return "\nsweep:" in text or any(has_sweep(parent) for parent in parents)


SWEEP_EXPERIMENTS = sorted(e for e in (str(p.relative_to(CONFIG_DIR / "exp").with_suffix(""))
                                       for p in (CONFIG_DIR / "exp").rglob("*.yaml")) if has_sweep(e))


def mandatory_inputs(exp: str, tmp_path: Path) -> list[str]:
    """Files for the keys an exp marks ??? (a pretrained checkpoint, an exported θ_A), as real state dicts."""
    import torch
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    probe = compose_config([f"+exp={exp}"], tmp_path / "probe", fast=False)
    missing = {key for key in ("pretrained", "theta_a") if key in probe.keys() and OmegaConf.is_missing(probe, key)}
    out = []
    if "pretrained" in missing:
        out.append(f"pretrained={model_checkpoint([f'+exp={exp}', 'pretrained=null'], tmp_path / 'pretrained.ckpt')}")
    if "theta_a" in missing:
        cfg = compose_config([f"+exp={exp}", "theta_a=null"], tmp_path / "probe", fast=False)
        net = instantiate(cfg.model, spec=instantiate(cfg.data).spec)
        torch.save(net.state_dict(), tmp_path / "theta_seed0.pt")  # what `python -m idlab.adapt.export` writes
        out.append(f"theta_a={tmp_path}/theta_seed${{seed}}.pt")
    return out


@pytest.mark.parametrize("exp", SWEEP_EXPERIMENTS)
def test_every_shipped_sweep_experiment_plans_and_validates(exp: str, tmp_path: Path) -> None:
    overrides = [f"+exp={exp}", "sweep.seeds=[0]", f"sweep.dir={tmp_path / exp}", *mandatory_inputs(exp, tmp_path)]
    GlobalHydra.instance().clear()
    # One seed keeps the dry run cheap; the baseline and every value are still composed and keyed.
    summary = run_sweep(CONFIG_DIR, overrides, dry_run=True)
    spec = summary["spec"]
    baselines = 1 if spec["baseline"] == "full" else 0
    points = len(spec["values"]) if spec["search"] == "grid" else spec["points_per_round"] + 1
    assert summary["runs"]["planned"] == summary["runs"]["pending"] == baselines + points
    assert not (tmp_path / exp / RUNS_DIR).exists() and not (tmp_path / exp / "plan.json").exists()
