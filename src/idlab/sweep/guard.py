"""Refuse multi-process (DDP) training inside launchers where Lightning would relaunch the whole sweep."""
from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from idlab.sweep.spec import SweepConfigError

_GPU_ACCELERATORS = ("gpu", "cuda", "auto")


def processes_per_job(trainer: DictConfig | dict[str, Any] | None) -> int:
    """How many training processes one job of this trainer config starts (devices × nodes)."""
    if not trainer:
        return 1
    devices = trainer.get("devices", 1)
    nodes = int(trainer.get("num_nodes", 1) or 1)
    return _device_count(devices, str(trainer.get("accelerator", "auto"))) * nodes


def check_single_process_jobs(master: DictConfig) -> None:
    """DDP in a sweep only through submitit with tasks_per_node = devices; otherwise a clear error."""
    processes = processes_per_job(master.get("trainer"))
    if processes <= 1:
        return
    launcher = master.hydra.launcher
    target = str(launcher.get("_target_", ""))
    tasks = int(launcher.get("tasks_per_node", 0) or 0) * int(launcher.get("nodes", 1) or 1)
    strategy = str(master.trainer.get("strategy", ""))
    if "submitit" in target.lower() and tasks == processes and "spawn" not in strategy:
        return
    raise SweepConfigError(
        f"trainer asks for {processes} processes per run (trainer.devices={master.trainer.get('devices')}, "
        f"num_nodes={master.trainer.get('num_nodes', 1)}) but launcher {target.rsplit('.', 1)[-1]} "
        f"{'with tasks_per_node×nodes=' + str(tasks) + ' ' if 'submitit' in target.lower() else ''}"
        "would let Lightning re-execute sweep.py for every extra rank, relaunching the sweep. "
        "Use one GPU per run (trainer.devices=1) and run several runs in parallel "
        "(hydra/launcher=joblib, fork or slurm), or use DDP through SLURM: hydra/launcher=slurm with "
        f"hydra.launcher.tasks_per_node={processes} hydra.launcher.gpus_per_node={processes}.")


def _device_count(devices: Any, accelerator: str) -> int:
    """Lightning's `devices` value as a number of processes."""
    if isinstance(devices, bool) or devices is None:
        return 1
    if isinstance(devices, int):
        return _visible_gpus(accelerator) if devices == -1 else max(devices, 1)
    if isinstance(devices, str):
        text = devices.strip()
        if text in ("auto", "-1"):
            return _visible_gpus(accelerator)
        if text.isdigit():
            return max(int(text), 1)
        return max(len([p for p in text.split(",") if p.strip()]), 1)
    try:
        return max(len(list(devices)), 1)
    except TypeError:
        return 1


def _visible_gpus(accelerator: str) -> int:
    """GPUs Lightning would take for devices=auto/-1 (1 on CPU)."""
    if accelerator not in _GPU_ACCELERATORS:
        return 1
    import torch

    return max(torch.cuda.device_count(), 1)
