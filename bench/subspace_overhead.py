"""Subspace-training overhead: median step time and peak memory of adapt=subspace vs full training.

python bench/subspace_overhead.py [--steps 50] [--models fc resnet18] [--dims 1000 10000 100000] [--out FILE]
One process, plain PyTorch loop (forward, cross-entropy, backward, Adam step) on random batches of 128 of
the right shape, so only the adaptation differs. Also checks the Triton kernels against the PyTorch path
on the device and times the projection alone (--kernels). Prints markdown tables.
"""
from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from idlab.adapt.subspace import Subspace, SubspaceConfigError
from idlab.adapt.subspace.dense import dense_bytes
from idlab.adapt.subspace.fastfood import FastfoodProjection
from idlab.adapt.subspace.sparse import SparseProjection
from idlab.data.spec import DataSpec
from idlab.models.fc import FC
from idlab.models.resnet import ResNet

MODELS = {
    "fc": (lambda: FC(DataSpec(kind="image", input_shape=(1, 28, 28), num_classes=10), width=200, depth=2),
           (1, 28, 28)),
    "resnet18": (lambda: ResNet(DataSpec(kind="image", input_shape=(3, 32, 32), num_classes=10),
                                variant="resnet18"), (3, 32, 32)),
}


DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
WARMUP = 10


class Clock:
    """Per-step wall time: CUDA events on the GPU (no host sync inside the loop), perf_counter on the CPU."""

    def __init__(self) -> None:
        self.marks: list = []

    def mark(self) -> None:
        """Record a point in time (in stream order on the GPU)."""
        if DEVICE.type == "cuda":
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self.marks.append(event)
        else:
            self.marks.append(time.perf_counter())

    def median_ms(self) -> float:
        """Median interval between consecutive marks."""
        if DEVICE.type == "cuda":
            torch.cuda.synchronize()
            spans = [a.elapsed_time(b) for a, b in zip(self.marks, self.marks[1:])]
        else:
            spans = [(b - a) * 1e3 for a, b in zip(self.marks, self.marks[1:])]
        return statistics.median(spans)


def peak_mib() -> float:
    """Peak allocated device memory since the last reset (NaN on the CPU)."""
    return torch.cuda.max_memory_allocated() / 2**20 if DEVICE.type == "cuda" else float("nan")


def step_stats(net: torch.nn.Module, shape: tuple[int, ...], steps: int, batch: int = 128) -> tuple[float, float]:
    """(median ms per optimiser step, peak MiB allocated during the steps)."""
    net = net.to(DEVICE).train()
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=1e-3)
    x = torch.randn(batch, *shape, device=DEVICE)
    y = torch.randint(0, 10, (batch,), device=DEVICE)
    clock = Clock()
    for i in range(steps + WARMUP):
        if i == WARMUP and DEVICE.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        if i >= WARMUP:
            clock.mark()
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    clock.mark()
    return clock.median_ms(), peak_mib()


def cleanup() -> None:
    """Free the previous case's tensors before the next one."""
    gc.collect()
    if DEVICE.type == "cuda":
        torch.cuda.empty_cache()


def overhead_table(models: list[str], dims: list[int], steps: int,
                   projections: tuple[str, ...] = ("fastfood", "sparse", "dense")) -> list[str]:
    """Markdown rows: model, adaptation, d, step ms, ×full, peak MiB, ×full."""
    rows = ["| model | D | adaptation | d | step ms (median) | × full | peak MiB | × full |",
            "|---|---|---|---|---|---|---|---|"]
    for name in models:
        build, shape = MODELS[name]
        net = build()
        total = sum(p.numel() for p in net.parameters())
        full_ms, full_mib = step_stats(net, shape, steps)
        del net
        cleanup()
        rows.append(f"| {name} | {total:,} | full | – | {full_ms:.2f} | 1.00 | {full_mib:.0f} | 1.00 |")
        print(rows[-1], flush=True)
        for projection in ("fastfood", "sparse", "dense"):
            for d in dims:
                if projection == "dense" and projection in projections and dense_bytes(total, d) > 2**30:
                    rows.append(f"| {name} | {total:,} | dense | {d:,} | skipped: P = "
                                f"{dense_bytes(total, d) / 2**30:.1f} GiB > max_dense_bytes | | | |")
                    continue
                if projection not in projections:
                    continue
                try:
                    net = Subspace(d=d, projection=projection).apply(build())
                    ms, mib = step_stats(net, shape, steps)
                except (SubspaceConfigError, RuntimeError) as err:
                    rows.append(f"| {name} | {total:,} | {projection} | {d:,} | failed: {str(err)[:120]} | | | |")
                    print(rows[-1], flush=True)
                    continue
                finally:
                    net = None
                    cleanup()
                rows.append(f"| {name} | {total:,} | {projection} | {d:,} | {ms:.2f} | {ms / full_ms:.2f} | "
                            f"{mib:.0f} | {mib / full_mib:.2f} |")
                print(rows[-1], flush=True)
    return rows


def projection_ms(proj, repeats: int = 30) -> float:
    """Median ms of one forward + backward of the projection alone (θ0 add included)."""
    proj = proj.to(DEVICE)
    base = torch.zeros(proj.total, device=DEVICE)
    theta = torch.zeros(proj.d, device=DEVICE, requires_grad=True)
    grad = torch.randn(proj.total, device=DEVICE)
    for _ in range(3):
        proj(theta, base).backward(grad)
    clock = Clock()
    for _ in range(repeats):
        clock.mark()
        proj(theta, base).backward(grad)
    clock.mark()
    return clock.median_ms()


def kernel_table(totals: list[int], dims: list[int]) -> list[str]:
    """Projection-only timings of the Triton path vs the PyTorch path, and their agreement."""
    rows = ["| projection | D | d | Triton fwd+bwd ms | PyTorch fwd+bwd ms | max rel. diff |",
            "|---|---|---|---|---|---|"]
    for total in totals:
        rows += kernel_rows(total, dims)
    return rows


def kernel_rows(total: int, dims: list[int]) -> list[str]:
    """Rows of `kernel_table` for one D (four equal tensors for the sparse projection)."""
    rows = []
    sizes = [total // 4] * 3 + [total - 3 * (total // 4)]
    for d in dims:
        for label, make in (("fastfood", lambda b: FastfoodProjection(total, d, 0, backend=b)),
                            ("sparse", lambda b: SparseProjection(sizes, d, 0, backend=b))):
            fast, ref = make("triton").to(DEVICE), make("torch").to(DEVICE)
            theta = torch.randn(d, device=DEVICE)
            out, out_ref = fast(theta), ref(theta)
            diff = ((out - out_ref).abs().max() / out_ref.abs().max()).item()
            torch_ms = projection_ms(ref) if label == "fastfood" or d <= 10_000 else float("nan")
            rows.append(f"| {label} | {total:,} | {d:,} | {projection_ms(fast):.3f} | {torch_ms:.3f} | {diff:.1e} |")
            print(rows[-1], flush=True)
            del fast, ref
            cleanup()
    return rows


def variant_table(dims: list[int]) -> list[str]:
    """Fastfood fwd+bwd ms per kernel setting (inner tile bits, dot precision), to pick the defaults."""
    from idlab.adapt.subspace import fastfood_triton as kernels

    rows = ["| D | d | inner bits | precision | fwd+bwd ms |", "|---|---|---|---|---|"]
    defaults = (kernels.INNER_BITS, kernels.PRECISION)
    for total in (199_210, 11_173_962):
        for d in dims:
            for inner in (12, 14):
                for precision in ("ieee", "tf32x3"):
                    kernels.INNER_BITS, kernels.PRECISION = inner, precision
                    try:
                        ms = f"{projection_ms(FastfoodProjection(total, d, 0, backend='triton'), repeats=20):.3f}"
                    except Exception as err:  # noqa: BLE001 - a setting the compiler rejects is a table entry
                        ms = f"failed: {type(err).__name__}"
                    rows.append(f"| {total:,} | {d:,} | {inner} | {precision} | {ms} |")
                    print(rows[-1], flush=True)
    kernels.INNER_BITS, kernels.PRECISION = defaults
    return rows


def main() -> None:
    """Parse arguments, run the tables, print (and optionally write) markdown."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--dims", nargs="+", type=int, default=[1000, 10_000, 100_000])
    parser.add_argument("--kernels", action="store_true", help="also time the projections alone")
    parser.add_argument("--variants", action="store_true", help="also time Fastfood kernel settings")
    parser.add_argument("--projections", nargs="+", default=["fastfood", "sparse", "dense"])
    parser.add_argument("--inner-bits", type=int, default=None, help="Fastfood kernel tile bits (12..14)")
    parser.add_argument("--precision", default=None, help="Fastfood tl.dot input_precision (ieee, tf32x3)")
    parser.add_argument("--skip-steps", action="store_true", help="only the projection tables")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if DEVICE.type != "cuda":
        print("no CUDA device: CPU smoke run (times are not benchmarks)", file=sys.stderr)
    from idlab.adapt.subspace import fastfood_triton as kernels

    kernels.INNER_BITS = args.inner_bits or kernels.INNER_BITS
    kernels.PRECISION = args.precision or kernels.PRECISION
    name = torch.cuda.get_device_name() if DEVICE.type == "cuda" else "cpu"
    lines = [f"{time.strftime('%Y-%m-%d')}, device: {name}, torch {torch.__version__}, Fastfood kernel: inner bits "
             f"{kernels.INNER_BITS}, precision {kernels.PRECISION}", ""]
    if not args.skip_steps:
        lines += overhead_table(args.models, args.dims, args.steps, tuple(args.projections))
    if args.kernels:
        totals = [199_210, 11_173_962] if DEVICE.type == "cuda" else [50_000]
        lines += [""] + kernel_table(totals, args.dims)
    if args.variants:
        lines += [""] + variant_table(args.dims)
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(text + "\n")


if __name__ == "__main__":
    main()
