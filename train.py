"""Train one model: `python train.py [+exp=NAME] [group=choice ...] [key=value ...]`."""
from __future__ import annotations

from idlab import startup_imports

with startup_imports():  # the training stack, imported without the cyclic GC (idlab.startup_imports)
    import hydra
    from omegaconf import DictConfig

    from idlab.run import train
    from idlab.training.checks import bad_input_exits


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Compose the config, train, test, and return the monitored metric (what Hydra sweepers optimise).
    Bad input (a config value, missing data, a missing checkpoint) ends with one line naming it and the fix."""
    with bad_input_exits("train.py"):
        return train(cfg).get(cfg.monitor)


if __name__ == "__main__":
    main()
