"""Pre-launch check of one job config: build its model and adaptation without allocating memory."""
from __future__ import annotations

import logging

from hydra.utils import instantiate
from omegaconf import DictConfig

log = logging.getLogger(__name__)


def build_check(cfg: DictConfig) -> None:
    """Check the config and build data spec, model and adaptation on the meta device (raises when invalid)."""
    from idlab import startup_imports

    with startup_imports():  # the driver's first import of the training stack
        import torch

        from idlab.run import build_module
        from idlab.training.checks import check_config

    check_config(cfg)
    data = instantiate(cfg.data)
    try:
        with torch.device("meta"):
            build_module(cfg, data)
    except (NotImplementedError, RuntimeError) as err:
        if "meta" not in str(err).lower():
            raise
        log.debug("pre-launch build skipped: this model cannot be built on the meta device (%s)", err)
