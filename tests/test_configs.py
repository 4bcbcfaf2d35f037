"""Every config group choice and every experiment file composes; env.yaml agrees with pyproject."""
from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import yaml
from hydra.errors import ConfigCompositionException

from conftest import CONFIG_DIR, REPO, compose_config

GROUPS = {g: sorted(p.stem for p in (CONFIG_DIR / g).glob("*.yaml"))
          for g in ("data", "model", "adapt", "optim", "trainer", "logger", "callbacks")}
EXPS = sorted(p.stem for p in (CONFIG_DIR / "exp").glob("*.yaml"))


@pytest.mark.parametrize("group,choice", [(g, c) for g, cs in GROUPS.items() for c in cs])
def test_group_choice_composes(group: str, choice: str, tmp_path: Path) -> None:
    cfg = compose_config([f"{group}={choice}"], tmp_path)
    assert cfg.get(group) is not None or choice == "none"


@pytest.mark.parametrize("exp", EXPS)
def test_experiment_composes(exp: str, tmp_path: Path) -> None:
    cfg = compose_config([f"+exp={exp}"], tmp_path)
    assert cfg.name != "default", f"exp {exp} should set a run name"


def test_unknown_group_choice_lists_choices(tmp_path: Path) -> None:
    with pytest.raises(ConfigCompositionException, match="mnist_mini"):
        compose_config(["data=imagenet"], tmp_path)


def test_env_yaml_installs_this_package_with_pyproject_python() -> None:
    env = yaml.safe_load((REPO / "env.yaml").read_text())
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python="))
    version = python.split("=")[1]
    minimum = project["requires-python"].removeprefix(">=")
    assert tuple(map(int, version.split("."))) >= tuple(map(int, minimum.split(".")))
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert any(line.startswith("-e .") for line in pip), "env.yaml must pip-install this package"
    extras = {line.split("[")[1].rstrip("]") for line in pip if "[" in line}
    assert extras <= set(project["optional-dependencies"]), "env.yaml asks for an extra pyproject lacks"


@pytest.mark.parametrize("exp", EXPS)
def test_every_subspace_experiment_draws_its_projection_from_the_run_seed(exp: str, tmp_path: Path) -> None:
    cfg = compose_config([f"+exp={exp}", "seed=3"], tmp_path)
    if cfg.adapt._target_.endswith("Subspace"):
        assert cfg.adapt.seed == 3, f"{exp}: every seed must draw its own P (Li et al.), got adapt.seed={cfg.adapt.seed}"
    fixed = compose_config([f"+exp={exp}", "seed=3", "adapt=subspace", "adapt.seed=0"], tmp_path)
    assert fixed.adapt.seed == 0 and fixed.seed == 3, "a fixed P stays possible on purpose"
