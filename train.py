"""Train one model: `python train.py [+exp=NAME] [group=choice ...] [key=value ...]`."""
from __future__ import annotations

import hydra
from omegaconf import DictConfig

from idlab.run import train


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Compose the config, train, test, and return the monitored metric (what Hydra sweepers optimise)."""
    return train(cfg).get(cfg.monitor)


if __name__ == "__main__":
    main()
