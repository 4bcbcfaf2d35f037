"""What one GPU can give the Li FC grid: graph-replayed optimiser steps per second in P processes × T threads at once.

python bench/replay_bound.py [--layouts 1:1 1:6 6:1 6:6 2:3:6] [--steps 4000] [--out DIR]
Each of the T threads of each of the P processes builds the grid's run (784-200-200-10 in a Fastfood subspace of
d = 1000, Adam, mnist_mini on the device) through idlab, captures the plain step on its own CUDA stream as
bench/train_step.py's "plain graph" does (random batch index, forward, loss, backward and fused Adam in one CUDA
graph; captures one at a time), and, once every thread of every process is ready, replays it `--steps` times.
A third number K in a layout (P:T:K) packs K runs into each thread's graph, every run's step on its own branch
stream of the capture, so one replay advances K runs (what one training loop for several runs would launch).
No Lightning, no validation, no logging: the rate is what the grid's 105,600 steps could get from the GPU. The
aggregate is all steps over (last end - first start). Writes replay_bound.json.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUN = ["data=mnist_mini", "model=fc", "adapt=subspace", "adapt.d=1000", "optim=adam", "trainer=gpu"]
GRID_STEPS = 33 * 3200


def worker(threads: int, steps: int, start_file: Path, seed: int, pack: int = 1) -> dict:
    """One process: `threads` graphs captured one at a time, replayed side by side after the start file appears;
    each graph holds the steps of `pack` runs."""
    import torch
    import torch.nn.functional as F

    sys.path.insert(0, str(REPO / "tests"))
    from conftest import compose_config

    from idlab.run import build_module, make

    cfg = compose_config([*RUN, f"paths.data_dir={REPO / 'data'}"], Path(tempfile.mkdtemp()), fast=False)
    device = torch.device("cuda")
    lock, ready, spans = threading.Lock(), threading.Barrier(threads), []

    def one(index: int) -> None:
        with lock:  # build and capture one at a time: a capture must not see another thread's work
            stream = torch.cuda.Stream()
            branches = [torch.cuda.Stream() for _ in range(pack)] if pack > 1 else [stream]
            steps_of = []
            for member in range(pack):
                torch.manual_seed(seed * 10000 + index * 100 + member)
                data = make(cfg.data)
                data.setup("fit")
                net = build_module(cfg, data).net.to(device).train()
                params = [p for p in net.parameters() if p.requires_grad]
                opt = torch.optim.Adam(params, lr=torch.tensor(1e-3, device=device), fused=True, capturable=True)
                x_all, y_all = data.splits["train"].x.to(device), data.splits["train"].y.to(device)

                def step(net=net, params=params, opt=opt, data=data, x_all=x_all, y_all=y_all) -> None:
                    idx = torch.randint(len(x_all), (data.batch_size,), device=device)
                    for p in params:
                        p.grad = None
                    F.cross_entropy(net(data.transform(x_all[idx], None)), y_all[idx]).backward()
                    opt.step()
                steps_of.append((step, params))

            def packed() -> None:
                """Every member's step; with --pack > 1 on its own branch stream (parallel branches of one graph)."""
                if pack == 1:
                    steps_of[0][0]()
                    return
                for (step, _), branch in zip(steps_of, branches):
                    branch.wait_stream(stream)
                    with torch.cuda.stream(branch):
                        step()
                for branch in branches:
                    stream.wait_stream(branch)
            with torch.cuda.stream(stream):
                for _ in range(3):
                    packed()
                graph = torch.cuda.CUDAGraph()
                for _, params in steps_of:
                    for p in params:
                        p.grad = None
                with torch.cuda.graph(graph, stream=stream):
                    packed()
                for _ in range(20):
                    graph.replay()
            stream.synchronize()
        if ready.wait() == 0:  # every thread of this process captured: tell the parent
            (start_file.parent / f"ready{seed}").touch()
        while not start_file.exists():
            time.sleep(0.001)
        t0 = time.time()
        with torch.cuda.stream(stream):
            for _ in range(steps):
                graph.replay()
        stream.synchronize()
        spans.append((t0, time.time()))

    pool = [threading.Thread(target=one, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return {"spans": spans}


def layout(processes: int, threads: int, steps: int, pack: int = 1) -> dict:
    """P worker processes of T threads; the start file is written once every process said it is ready."""
    work = Path(tempfile.mkdtemp())
    start = work / "start"
    child = [str(threads), str(steps), str(start)]
    procs = [subprocess.Popen([sys.executable, __file__, "--child", *child, str(i), str(pack)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
             for i in range(processes)]
    deadline = time.time() + 240
    while time.time() < deadline and not all((work / f"ready{i}").exists() for i in range(processes)):
        time.sleep(0.2)
    start.write_text("go")
    spans, errors = [], []
    for p in procs:
        out, err = p.communicate(timeout=600)
        lines = [line for line in out.splitlines() if line.startswith("{")]
        if lines:
            spans += json.loads(lines[-1])["spans"]
        else:
            errors.append(err[-2000:])
    if not spans:
        return {"processes": processes, "threads": threads, "pack": pack, "errors": errors}
    first, last = min(s for s, _ in spans), max(e for _, e in spans)
    total = steps * pack * len(spans)
    rate = total / (last - first)
    return {"processes": processes, "threads": threads, "pack": pack, "runs": len(spans) * pack, "steps_each": steps,
            "span_s": last - first, "aggregate_steps_per_s": rate, "ms_per_step_aggregate": 1000 / rate,
            "grid_lower_bound_s": GRID_STEPS / rate, "errors": errors}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layouts", nargs="+", default=["1:1", "1:6", "6:1", "6:6"],
                        help="PROCESSES:THREADS[:PACK] (PACK runs' steps captured in each thread's graph)")
    parser.add_argument("--steps", type=int, default=4000, help="replays per run")
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "bench_replay_bound")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        threads, steps, start, seed, pack = args.child
        print(json.dumps(worker(int(threads), int(steps), Path(start), int(seed), int(pack))))
        return
    import torch

    args.out.mkdir(parents=True, exist_ok=True)
    result = {"device": torch.cuda.get_device_name(), "date": time.strftime("%Y-%m-%d"), "run": RUN, "layouts": []}
    for item in args.layouts:
        processes, threads, pack = ([int(v) for v in item.split(":")] + [1])[:3]
        row = layout(processes, threads, args.steps, pack)
        result["layouts"].append(row)
        print({k: v for k, v in row.items() if k != "errors"}, row["errors"][:1], flush=True)
        (args.out / "replay_bound.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
