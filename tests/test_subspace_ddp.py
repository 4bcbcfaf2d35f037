"""DDP: θ0 is taken from rank 0 through the frozen views, P is the same on every rank, θ_d stays in sync."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent("""
    import os, sys
    import torch
    import torch.distributed as dist
    import torch.multiprocessing as mp
    from torch.nn.parallel import DistributedDataParallel as DDP
    from idlab.adapt.subspace import Subspace
    from idlab.data.spec import DataSpec
    from idlab.models.lenet import LeNet

    def run(rank, path):
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=sys.argv[2])
        dist.init_process_group("gloo", rank=rank, world_size=2)
        torch.set_num_threads(1)
        torch.manual_seed(rank)  # different θ0 per rank before DDP
        net = Subspace(d=200, projection=sys.argv[3]).apply(LeNet(DataSpec("image", (1, 28, 28), 10)))
        model = DDP(net)
        assert "_theta0" not in dict(model.module.named_buffers()), "θ0 must not be broadcast every step"
        opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
        torch.manual_seed(100 + rank)  # different data per rank
        for _ in range(3):
            x, y = torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        probe = torch.ones(2, 1, 28, 28)
        torch.save({"theta0": net._theta0.clone(), "theta_d": net.theta_d.detach().clone(),
                    "out": net(probe).detach()}, f"{path}/rank{rank}.pt")
        dist.destroy_process_group()

    if __name__ == "__main__":
        mp.spawn(run, args=(sys.argv[1],), nprocs=2)
""")


def test_two_rank_ddp_keeps_theta0_and_theta_d_identical(tmp_path: Path):
    script = tmp_path / "ddp_run.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    port = str(29500 + os.getpid() % 1000)
    done = subprocess.run([sys.executable, str(script), str(tmp_path), port, "fastfood"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    import torch

    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert torch.equal(ranks[0]["theta0"], ranks[1]["theta0"])
    assert torch.equal(ranks[0]["theta_d"], ranks[1]["theta_d"]) and ranks[0]["theta_d"].abs().sum() > 0
    assert torch.equal(ranks[0]["out"], ranks[1]["out"])
