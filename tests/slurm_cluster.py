"""A real one-node SLURM cluster on localhost for tests: munged + slurmctld + slurmd from Debian's slurm-wlm and
munge packages (installed with apt-get when absent), private key, sockets, ports and state under one folder,
ProctrackType=proctrack/pgid, TaskPlugin=task/none, no accounting. Needs root."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

PACKAGES = ("slurm-wlm", "munge")
DAEMONS = ("slurmctld", "slurmd", "munged")
NODE = "idlabnode"


def unavailable_reason() -> str | None:
    """Why a cluster cannot be started here (None: it can, possibly after installing the packages)."""
    if os.geteuid() != 0:
        return "starting slurmctld/slurmd needs root"
    missing = [d for d in ("munged", "slurmctld", "slurmd", "sbatch", "squeue") if shutil.which(d) is None]
    if missing and shutil.which("apt-get") is None:
        return f"{', '.join(missing)} not installed and no apt-get to install {' '.join(PACKAGES)}"
    return None


def install_packages() -> str | None:
    """apt-get install the packages when a binary is missing; returns why that failed, or None."""
    if all(shutil.which(d) for d in ("munged", "slurmctld", "slurmd", "sbatch", "squeue")):
        return None
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", *PACKAGES]
    done = subprocess.run(install, env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:  # stale or empty package lists: refresh them once
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, text=True, timeout=600)
        done = subprocess.run(install, env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        return f"apt-get install {' '.join(PACKAGES)} failed: {done.stderr.strip()[-500:]}"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Cluster:
    """The running cluster: `env` points SLURM's clients (sbatch, squeue, submitit) at it."""

    root: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def conf(self) -> Path:
        return self.root / "slurm.conf"

    def run(self, *command: str) -> subprocess.CompletedProcess:
        return subprocess.run(list(command), env=self.env, capture_output=True, text=True, timeout=60)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in sorted((self.root / "log").glob("*")))

    def start(self, cpus: int) -> None:
        """Write the key and slurm.conf, start munged, slurmctld and slurmd, wait until the node is idle."""
        for sub in ("munge", "state", "spool", "log"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(self.root / "munge", 0o755)
        key = self.root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        os.chmod(key, 0o400)
        sock = self.root / "munge" / "munge.socket"
        self.conf.write_text("\n".join([
            "ClusterName=idlabtest", "SlurmctldHost=localhost(127.0.0.1)",
            f"SlurmctldPort={free_port()}", f"SlurmdPort={free_port()}", "SlurmUser=root", "SlurmdUser=root",
            "AuthType=auth/munge", f"AuthInfo=socket={sock}", "CredType=cred/munge",
            f"StateSaveLocation={self.root / 'state'}", f"SlurmdSpoolDir={self.root / 'spool'}",
            f"SlurmctldPidFile={self.root / 'slurmctld.pid'}", f"SlurmdPidFile={self.root / 'slurmd.pid'}",
            f"SlurmctldLogFile={self.root / 'log' / 'slurmctld.log'}",
            f"SlurmdLogFile={self.root / 'log' / 'slurmd.log'}",
            "ProctrackType=proctrack/pgid", "TaskPlugin=task/none", "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none", "SchedulerType=sched/backfill",
            "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core", "MpiDefault=none",
            "ReturnToService=2", "InactiveLimit=0", "KillWait=5",
            f"NodeName={NODE} NodeAddr=127.0.0.1 NodeHostname=localhost CPUs={cpus} RealMemory=1 State=UNKNOWN",
            f"PartitionName=debug Nodes={NODE} Default=YES MaxTime=INFINITE State=UP", ""]))
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        subprocess.run(["munged", "--force", f"--key-file={key}", f"--socket={sock}",
                        f"--pid-file={self.root / 'munged.pid'}", f"--log-file={self.root / 'log' / 'munged.log'}",
                        f"--seed-file={self.root / 'munge' / 'seed'}"], check=True, timeout=60)
        subprocess.run(["slurmctld", "-f", str(self.conf)], env=self.env, check=True, timeout=60)
        subprocess.run(["slurmd", "-f", str(self.conf), "-N", NODE], env=self.env, check=True, timeout=60)
        deadline = time.time() + 60
        while time.time() < deadline:
            state = self.run("sinfo", "--noheader", "--format=%T").stdout.strip()
            if state == "idle":
                return
            time.sleep(0.5)
        raise RuntimeError(f"the SLURM node never became idle (sinfo: {state!r})\n{self.logs()}")

    def stop(self) -> None:
        """Cancel every job, then stop the three daemons this cluster started (by their pid files)."""
        if self.env:
            self.run("scancel", "--user=root")
        for daemon in DAEMONS:
            pid_file = self.root / f"{daemon}.pid"
            try:
                pid = int(pid_file.read_text().strip())
            except (OSError, ValueError):
                continue
            try:
                os.kill(pid, 15)
                for _ in range(100):
                    os.kill(pid, 0)
                    time.sleep(0.1)
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
