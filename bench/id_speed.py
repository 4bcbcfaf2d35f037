"""Benchmark: GPU TwoNN vs scikit-dimension, ID vs scale + overlap vs DADApy, ActivationID's share of training time.

    python bench/id_speed.py --out results/ [--parts knn,cluster,scaling,probe,resnet,resnet_paired,recording,contention,background,grokking] [--quick]
                             [--base-again]

Writes id_speed.json (updated after every measurement, so a cut-off run keeps what it finished).
`scaling` compares with DADApy's numbers in bench/dadapy_reference.json (DADApy needs numpy < 2, so it was run
on another machine's CPU by bench/dadapy_reference.py on the same data; the checksums show it is the same data).
CIFAR-shaped data is random uint8 images written in torchvision's format (no CIFAR on the benchmark machine):
the timings need the shapes, not the content.
"""
from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import astuple
from pathlib import Path

import numpy as np
import skdim
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src"), str(REPO / "tests"), str(REPO / "bench")]

from dadapy_reference import checksum, reference_data  # noqa: E402
from idlab.id.knn import SearchSpace, search_dtypes  # noqa: E402
from idlab.id.multiscale import id_scaling, neighbourhood_overlap  # noqa: E402
from idlab.id.twonn import distinct_search, two_nearest_distances, twonn, twonn_bootstrap  # noqa: E402


class Results:
    """A JSON file rewritten after every entry."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data = {"device": device_name(), "date": time.strftime("%Y-%m-%d"), "torch": torch.__version__}
        self.save()

    def add(self, section: str, entry: dict) -> None:
        """Append one entry to a section, print it and save."""
        self.data.setdefault(section, []).append(entry)
        print(section, json.dumps(entry), flush=True)
        self.save()

    def save(self) -> None:
        """Write the JSON file."""
        self.path.write_text(json.dumps(self.data, indent=1))


def device_name() -> str:
    """GPU name, or 'cpu'."""
    return torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"


def sync() -> None:
    """Wait for queued GPU work."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    """Median wall seconds over `repeats` calls (after one warm-up call) and the last result; 0: one cold call."""
    if repeats == 0:
        sync()
        start = time.perf_counter()
        result = fn()
        sync()
        return time.perf_counter() - start, result
    result = fn()
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        result = fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def manifold(n: int, features: int, dim: int = 10, seed: int = 0) -> torch.Tensor:
    """A smooth `dim`-dimensional manifold in R^features: tanh of a random linear map of Gaussian latents."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, dim, generator=g)
    w = torch.randn(dim, features, generator=g) / dim**0.5
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.tanh(z.to(device) @ w.to(device))


def certified_by_first_tier(x: torch.Tensor) -> float:
    """Fraction of rows whose two nearest neighbours the fastest search precision certifies alone."""
    space = SearchSpace(x, search_dtypes(x.device)[0])
    step = max(1, 2**26 // max(x.shape))
    certified = [space.query(torch.arange(s, min(s + step, len(x)), device=x.device), 16)[2]
                 for s in range(0, len(x), step)]
    return float((torch.cat(certified) >= 2).float().mean())


def bench_cluster(results: Results, quick: bool, k: int = 64) -> None:
    """A trained deep layer's geometry: 99 % of the points in a tight 16-dimensional cluster, 1 % about 50x farther
    out. The search for k neighbours as ActivationID runs it (distinct_search): time, rows settled per precision
    tier, largest relative error of the k distances against float64 brute force; then the same with the reach
    bound of SearchSpace.lower_bounds switched off (every row bounded against the farthest key, as before it)."""
    import idlab.id.knn as knn

    n, f = (600, 64) if quick else (10_000, 8192)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    g = torch.Generator().manual_seed(0)
    far = n // 100
    cluster = (torch.randn(n - far, 16, generator=g) @ torch.randn(16, f, generator=g)) / 16**0.5
    x = torch.cat([0.02 * cluster + 1e-4 * torch.randn(n - far, f, generator=g), torch.randn(far, f, generator=g)])
    x = x.to(device)
    xd = x.double()
    sq = (xd * xd).sum(1)
    exact = (sq[:, None] + sq[None, :] - 2 * xd @ xd.T).clamp_min(0).sqrt()  # float64: no cancellation at this scale
    exact.fill_diagonal_(float("inf"))
    reference = torch.topk(exact, k, dim=1, largest=False).values
    del exact, xd
    original = knn.SearchSpace

    def without_reach(keys: torch.Tensor, dtype: torch.dtype) -> SearchSpace:
        space = original(keys, dtype)
        space.relative_error = 1.0
        return space

    for reach in (True, False):
        knn.SearchSpace = original if reach else without_reach
        try:
            seconds, found = timed(lambda: distinct_search(x, k), 3)
        finally:
            knn.SearchSpace = original
        got = found.neighbours().distances[:, :k]
        results.add("cluster", {"N": n, "F": f, "k": k, "reach_bound": reach, "search_s": seconds,
                                "tiers": found.neighbours().tiers,
                                "max_rel_err_vs_fp64": float(((got - reference).abs() / reference).max())})


def bench_knn(results: Results, sizes: list[int], features: list[int], skdim_budget: float) -> None:
    """twonn (GPU) vs skdim TwoNN (CPU): times, estimates, exactness of r1/r2 against float64 brute force."""
    skdim_spent = 0.0
    for n in sizes:
        for f in features:
            x = manifold(n, f)
            ours_s, ours = timed(lambda: twonn(x), 3)
            boot_s, boot = timed(lambda: twonn_bootstrap(x, 20, 0.9), 2)
            entry = {"N": n, "F": f, "twonn_s": ours_s, "twonn": ours, "bootstrap20_s": boot_s,
                     "bootstrap_mean": boot.value, "bootstrap_std": boot.std,
                     "first_tier_certified": certified_by_first_tier(x)}
            if n <= 2000:
                r = two_nearest_distances(x).cpu()
                exact = torch.cdist(x.double(), x.double(), compute_mode="donot_use_mm_for_euclid_dist")
                exact.fill_diagonal_(float("inf"))
                ref = torch.topk(exact, 2, largest=False).values.cpu()
                entry["r1r2_max_rel_err_vs_fp64"] = float(((r - ref).abs() / ref).max())
            points = x.cpu().numpy()
            estimated = skdim_spent_estimate(n, f)
            if skdim_spent + estimated <= skdim_budget:
                start = time.perf_counter()
                theirs = skdim.id.TwoNN().fit(points).dimension_
                took = time.perf_counter() - start
                skdim_spent += took
                entry.update(skdim_s=took, skdim=theirs, speedup=took / ours_s, rel_diff=abs(ours - theirs) / theirs)
            else:
                entry["skdim_skipped"] = f"estimated {estimated:.0f} s exceeds the remaining budget"
            results.add("knn", entry)
            del x, points


def bench_scaling(results: Results, sizes: list[tuple[int, int]], reference: Path, repeats: int = 3) -> None:
    """The whole GRIDE ID-vs-scale curve (range_max 64) plus label overlap (k 30) from one exact search, against
    DADApy's CPU path on the same data; also each from its own search, and the decimated TwoNN curve."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dadapy = json.loads(reference.read_text()) if reference.is_file() else {"entries": []}
    for n, f in sizes:
        points, labels = reference_data(n, f)
        x, y = torch.from_numpy(points).to(device), torch.from_numpy(labels).to(device)

        def one_search():
            found = distinct_search(x, 64)
            return (id_scaling(found, 64), neighbourhood_overlap(found, y, 30),
                    neighbourhood_overlap(found, y, 30, weighted=True), found)

        shared_s, (curve, overlap, weighted, found) = timed(one_search, repeats)
        separate_s, _ = timed(lambda: (id_scaling(x, 64), neighbourhood_overlap(x, y, 30)), repeats)
        decimation_s, decimated = timed(lambda: id_scaling(x, 64, "twonn"), min(repeats, 2))
        rows = torch.randperm(n, generator=torch.Generator().manual_seed(0))[:200].to(device)
        exact = torch.cdist(x[rows].double(), x.double(), compute_mode="donot_use_mm_for_euclid_dist")
        exact[torch.arange(200, device=device), rows] = float("inf")
        reference_64 = torch.topk(exact, 64, largest=False).values
        got_64 = found.neighbours().distances[rows, :64]
        entry = {"N": n, "F": f, "curve_plus_overlap_one_search_s": shared_s, "each_own_search_s": separate_s,
                 "twonn_decimation_s": decimation_s, "gride_ids": curve.ids.tolist(),
                 "gride_errors": curve.errors.tolist(), "gride_scales": curve.scales.tolist(),
                 "label_overlap": overlap, "label_overlap_weighted": weighted,
                 "twonn_decimation_ids": decimated.ids.tolist(), "tiers": found.neighbours().tiers,
                 "r1_to_r64_max_rel_err_vs_fp64_200_rows": float(((got_64 - reference_64).abs() / reference_64).max())}
        theirs = next((e for e in dadapy["entries"] if (e["N"], e["F"]) == (n, f)), None)
        if theirs is None:
            entry["dadapy"] = f"no entry for N={n}, F={f} in {reference}"
        elif theirs["checksum"] != checksum(points):
            entry["dadapy"] = "data checksum differs from the DADApy run: not compared"
        else:
            relative = {key: float(np.max(np.abs(np.array(entry[key]) / np.array(theirs[key]) - 1)))
                        for key in ("gride_ids", "gride_errors", "gride_scales")}
            entry.update(dadapy_s=theirs["curve_plus_overlap_s"], dadapy_cpu=f"{dadapy.get('cpu_count')} cores, "
                         f"{dadapy.get('date')}", speedup=theirs["curve_plus_overlap_s"] / shared_s,
                         max_rel_diff_vs_dadapy=relative,
                         label_overlap_diff_vs_dadapy=abs(overlap - theirs["label_overlap"]),
                         weighted_overlap_diff_vs_dadapy=abs(weighted - theirs["label_overlap_weighted"]))
        results.add("scaling", entry)
        del x, y, found


def bench_probe(results: Results, n: int, quick: bool) -> None:
    """ResNet-18's probe forward (what dominates a cifar10_id measurement) under variants: time, and how far each
    moves the activations and the IDs from the NCHW reference (eval, no_grad, batch 1024, fp32; the callback's
    default turns CUDA image batches channels-last since 2026-12-02, the `channels_last_input` variant)."""
    from idlab.models.base import evaluation
    from idlab.data.spec import DataSpec
    from idlab.id.activations import collect_activations
    from idlab.models.resnet import ResNet

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    model = ResNet(DataSpec("image", (3, 32, 32), 10), width=8 if quick else None).to(device)
    x = torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(0)).to(device)
    layers = ["layer3", "layer4", "pool"]

    def forward(batch_size=1024, channels_last=False, autocast=False, inference=False):
        def run():
            inputs = x.contiguous(memory_format=torch.channels_last) if channels_last else x
            with evaluation(model), torch.inference_mode(inference), \
                    torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                return collect_activations(model, model, layers, inputs, batch_size, device,
                                           channels_last=channels_last)
        return run

    conv_tf32 = getattr(getattr(torch.backends.cudnn, "conv", None), "fp32_precision", None)
    base_s, base = timed(forward(), 3)
    ids = {layer: twonn(base[layer]) for layer in layers}
    variants = [("inference_mode", forward(inference=True)), ("batch_2500", forward(batch_size=2500)),
                ("channels_last_input", forward(channels_last=True)), ("bf16_autocast", forward(autocast=True))]
    for name, variant in variants:
        took, out = timed(variant, 3)
        moved = max(float(((out[k].float() - base[k]).abs().max() / base[k].abs().max())) for k in layers)
        results.add("probe_forward", {"variant": name, "N": n, "s": took, "default_s": base_s,
                                      "speedup": base_s / took, "max_rel_activation_change": moved,
                                      "twonn_change": {k: twonn(out[k].float()) - ids[k] for k in layers},
                                      "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
                                      "cudnn_conv_fp32_precision": conv_tf32})


def skdim_spent_estimate(n: int, f: int) -> float:
    """Rough skdim TwoNN seconds on the benchmark CPU (O(N² F)), to stay inside the call's time limit."""
    return 40.0 * (n / 10_000) ** 2 * (f / 65_536) + 2.0 * (n / 10_000) ** 2


def first_tier_margins(search, k: int) -> dict:
    """Why rows did or did not certify in the fastest precision tier: medians over rows of that tier's centred
    norms and rounding errors, of the exact k-th distance, of the margin to each row's last computed candidate (what
    the rounding errors and the Gram slack, here in distance units, must stay below), all in the tier's scaled units
    (centred norms at most 64)."""
    space = search.spaces.get(0)
    if space is None:
        return {}
    norms = space.sq_norms.sqrt()
    dist = search.dist * space.scale
    kth = dist[:, k - 1]
    last = dist.gather(1, (search.width - 1).clamp_min(0)[:, None])[:, 0]  # each row's widest computed candidate
    wide = torch.isfinite(last) & (search.width > k)
    slack = space.product_roundoff * (norms + space.max_norm) ** 2  # squared; lower_bounds' bound against any key

    def median(x: torch.Tensor) -> float | None:
        return float(x.double().median()) if x.numel() else None

    return {"tier0": str(space.dtype).removeprefix("torch."), "max_norm": space.max_norm,
            "median_norm": median(norms), "max_error": space.max_error, "median_error": median(space.error),
            "median_kth": median(kth[torch.isfinite(kth)]),
            "median_last_candidate_minus_kth": median(last[wide] - kth[wide]),
            "median_slack_as_distance": median(slack[search.positions] / (2 * kth.clamp_min(1e-30)))}


class EpochClock:
    """Wall time of every ActivationID measurement, split into probe forward, estimators and reporting."""

    def __init__(self, search_stats: bool = False) -> None:
        self.search_stats = search_stats  # record first_tier_margins of every search (untimed, but inside measure)
        self.measures: list[float] = []
        self.parts: dict[str, list[float]] = {}
        self.tiers: list[dict[str, int]] = []
        self.events: list[tuple[str, float, float]] = []  # (part, start, end) of the clocked calls

    def add(self, part: str, seconds: float) -> None:
        """Accumulate the time of one part."""
        self.parts.setdefault(part, []).append(seconds)

    def timing(self, part: str, fn: Callable) -> Callable:
        """fn, timed (GPU synchronised) into `part` on every call."""
        def timed_fn(*args, **kwargs):
            sync()
            start = time.perf_counter()
            result = fn(*args, **kwargs)
            sync()
            self.add(part, time.perf_counter() - start)
            return result
        return timed_fn

    def wrap(self, callback) -> None:
        """Time the callback's measure(), its probe forward, the shared search and each estimator's readings (by
        feature count), report() and the figures. With `background` on CUDA, only the training thread's time in
        measure() and the worker's time per job, without device synchronisation (that would stall training)."""
        if callback.background is not False and torch.cuda.is_available():
            callback.measure = self.clocked("measure", callback.measure)
            callback.in_background = self.clocked("background", callback.in_background)
            settle = callback.settle

            def settle_waiting(wait: bool) -> None:  # how long the training thread waits for the worker
                pending = callback.pending is not None and not callback.pending[1].done()
                (self.clocked("waited", settle) if wait and pending else settle)(wait)
            callback.settle = settle_waiting
            return
        cb_module = sys.modules["idlab.callbacks.activation_id"]

        callback.measure = self.timing("measure", callback.measure)
        callback.on_validation_epoch_end = self.timing("recording_close", callback.on_validation_epoch_end)
        callback.report = self.timing("report", callback.report)
        callback.publish = self.timing("figure", callback.publish)
        cb_module.collect_activations = self.timing("probe_forward", cb_module.collect_activations)
        search = cb_module.distinct_search

        def recording_search(points, k, candidates):
            found = self.timing(f"search_k{k}_F{points.shape[1]}", search)(points, k, candidates)
            widths = torch.bincount(found.search.width).nonzero().flatten().tolist()
            self.tiers.append({"F": int(points.shape[1]), "k": k, "N": int(points.shape[0]),
                               **(found.neighbours().tiers or {}), "widths": widths,
                               **(first_tier_margins(found.search, k) if self.search_stats else {})})
            return found
        cb_module.distinct_search = recording_search
        for estimator in callback.estimators:
            def timed_read(x, labels=None, found=None, _inner=estimator.read, _tag=estimator.tag):
                return self.timing(f"{_tag}_F{x.shape[1]}", _inner)(x, labels, found)
            estimator.read = timed_read

    def clocked(self, part: str, fn: Callable) -> Callable:
        """fn, its wall time (no synchronisation) added to `part` on every call."""
        def clocked_fn(*args, **kwargs):
            start = time.perf_counter()
            result = fn(*args, **kwargs)
            self.add(part, time.perf_counter() - start)
            self.events.append((part, start, time.perf_counter()))
            return result
        return clocked_fn

    def summary(self) -> dict:
        """Median seconds per part, and the precision tiers seen."""
        return {"measure_s": self.parts.get("measure", []), "background_s": self.parts.get("background", []),
                "waited_s": self.parts.get("waited", []),
                "events": self.events,  # perf_counter seconds, as fit_timed's epoch marks
                "median_parts_s": {k: statistics.median(v) for k, v in self.parts.items()},
                "tiers": self.tiers[-12:]}


def fit_timed(overrides: list[str], run_dir: Path, unit: str, callbacks: tuple = (), search_stats: bool = False) -> dict:
    """Fit one composed configuration (with extra `callbacks`, after the epoch marks); wall time per epoch (or per
    500 steps) and per ID measurement (with `search_stats`, each search's first_tier_margins)."""
    import pytorch_lightning as pl
    from conftest import compose_config
    from idlab.callbacks.activation_id import ActivationID
    from idlab.run import build_module, build_trainer

    cfg = compose_config(overrides + ["test=false", "~callbacks.progress_bar", "+trainer.enable_progress_bar=false"],
                         run_dir, fast=False)
    pl.seed_everything(0)
    data = cfg_data(cfg)
    module, trainer = build_module(cfg, data), build_trainer(cfg)
    clock = EpochClock(search_stats)
    for callback in trainer.callbacks:
        if isinstance(callback, ActivationID):
            clock.wrap(callback)
    marks: list[float] = []

    def mark() -> None:  # training's own stream: a background measurement's stream is not waited for
        if torch.cuda.is_available():
            torch.cuda.current_stream().synchronize()
        marks.append(time.perf_counter())

    class Marks(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            if unit == "500 steps" and trainer.global_step % 500 == 0:
                mark()

        def on_train_epoch_start(self, trainer, pl_module) -> None:
            if unit == "epoch":
                mark()

    trainer.callbacks.insert(0, Marks())  # before ActivationID: span k opens with measurement k
    trainer.callbacks.extend(callbacks)
    start = time.perf_counter()
    trainer.fit(module, datamodule=data)
    sync()
    total = time.perf_counter() - start
    spans = [b - a for a, b in zip(marks, marks[1:])]
    return {"fit_s": total, f"per_{unit.replace(' ', '_')}_s": spans, "marks": marks, **clock.summary()}


def cfg_data(cfg):
    """Instantiate and prepare the datamodule."""
    from hydra.utils import instantiate

    data = instantiate(cfg.data)
    data.prepare_data()
    return data


def cifar_setup(quick: bool) -> tuple[Path, list[str]]:
    """Random CIFAR-10-shaped images in torchvision's format (torchvision pointed at them) and the overrides every
    ResNet fit takes; on the GPU also an untimed 2-epoch fit first (a process's first fit pays cuDNN's and the
    allocator's warm-up in its first epochs)."""
    from torchvision.datasets import CIFAR10

    from fake_datasets import write_cifar

    root = Path(tempfile.mkdtemp())
    for attr, value in write_cifar(root, 10, n_per_batch=200 if quick else 10_000).items():
        setattr(CIFAR10, attr, value)
    common = [f"data.data_dir={root}"]
    if quick:
        common += ["model.width=8", "data.val_size=100", "trainer=cpu", "data.on_device=false"]
    else:
        fit_timed(["+exp=cifar10", "trainer.max_epochs=2", common[0]], root / "warmup", "epoch")
    return root, common


def bench_resnet(results: Results, epochs: int, quick: bool, twonn_only: bool = True, base_again: bool = False) -> None:
    """ResNet-18 on random CIFAR-shaped data: epoch time with and without ActivationID (6 layers, 10,000 points),
    as shipped (TwoNN + ID vs scale + overlap; `background` at its default) and in line (`background=false`, where
    each part is timed), and with `twonn_only` TwoNN alone in line (the earlier setting); `base_again` fits the
    base once more at the end (run order and noise)."""
    root, common = cifar_setup(quick)
    common.append(f"trainer.max_epochs={epochs}")
    base = fit_timed(["+exp=cifar10"] + common, root / "base", "epoch")
    with_id = fit_timed(["+exp=cifar10_id"] + common, root / "id", "epoch")
    entry = summarise(base, with_id, "per_epoch_s")
    inline = fit_timed(["+exp=cifar10_id", "callbacks.activation_id.background=false"] + common, root / "inline",
                       "epoch")
    entry["in_line"] = summarise(base, inline, "per_epoch_s")
    if twonn_only:
        alone = fit_timed(["+exp=cifar10_id", "callbacks.activation_id.estimators=[twonn]",
                           "callbacks.activation_id.background=false"] + common, root / "tw", "epoch")
        entry["twonn_only"] = summarise(base, alone, "per_epoch_s")
    if base_again:
        again = fit_timed(["+exp=cifar10"] + common, root / "base2", "epoch")
        entry["base_again"] = again
        entry["median_span_base_again_s"] = steady(again["per_epoch_s"])
        both = (entry["median_span_base_s"] + entry["median_span_base_again_s"]) / 2
        entry["overhead_from_spans_vs_both_bases"] = entry["median_span_with_id_s"] / both - 1
        entry["in_line"]["overhead_from_spans_vs_both_bases"] = entry["in_line"]["median_span_with_id_s"] / both - 1
    results.add("resnet18_cifar", entry)


def bench_resnet_paired(results: Results, epochs: int, quick: bool, extra: list[str] | None = None,
                        backgrounds: tuple[str, ...] = ("true", "false"), search_stats: bool = False,
                        variants: list[list[str]] | None = None) -> None:
    """The ResNet-18 share from epochs of one fit compared with each other: ActivationID every 3rd epoch, so epochs
    that carry a measurement (3, 6, ...), epochs whose closing validation records the val probe for it (2, 5, ...;
    `reuse_validation`) and plain epochs (1, 4, ...) alternate on the same machine in the same state (fit-to-fit
    spans on a shared GPU host move by ±5 %). Share = (median measured span + median recording span) / median plain
    span − 2: what an every-epoch cadence adds to each epoch, the recording included (without a val probe, or with
    reuse off, recording spans are plain ones). One fit per `backgrounds` setting and variant (a list of overrides;
    default: one, no overrides), each with the `extra` overrides, in one process after one warm-up."""
    root, common = cifar_setup(quick)
    common.append("callbacks.activation_id.every_n_epochs=3")
    for number, (variant, background) in enumerate((v, b) for v in variants or [[]] for b in backgrounds):
        fit = fit_timed(["+exp=cifar10_id", f"trainer.max_epochs={epochs}",
                         f"callbacks.activation_id.background={background}"] + common + (extra or []) + variant,
                        root / f"fit{number}", "epoch", search_stats=search_stats)
        spans = fit["per_epoch_s"]  # span e opens at epoch e's start; epoch 0 (cold: Triton compile) left out
        with_m, recording, plain = (statistics.median(spans[i::3]) for i in (3, 2, 1))
        results.add("resnet18_cifar_paired", {"background": background == "true", "epochs": epochs,
                                              "median_span_with_measurement_s": with_m,
                                              "median_span_recording_s": recording, "median_span_without_s": plain,
                                              "share": (with_m + recording) / plain - 2,
                                              "share_measured_epoch_only": with_m / plain - 1,
                                              "overrides": (extra or []) + variant, "fit": fit})


def bench_recording(results: Results, epochs: int, quick: bool) -> None:
    """`reuse_validation` against the probe's own forward: a `cifar10_id` fit on the val split, every epoch; at each
    measurement that takes the validation pass's activations, the probe's own forward of the same weights too
    (channels-last, batch 1,024), with each layer's relative difference (Frobenius) and TwoNN from both."""
    import pytorch_lightning as pl
    from idlab.callbacks.activation_id import ActivationID

    root, common = cifar_setup(quick)
    checks: list[dict] = []

    class Compare(pl.Callback):
        def on_fit_start(self, trainer, pl_module) -> None:
            callback = next(c for c in trainer.callbacks if isinstance(c, ActivationID))
            taken = callback.recorded

            def recorded(step: int):
                got = taken(step)
                if got is not None:
                    own = callback.activations(pl_module, callback.probes["val"][0])
                    checks.append({"step": step, "layers": {
                        name: {"rel_diff": float((got[name] - own[name]).norm() / own[name].norm()),
                               "twonn_recorded": twonn(got[name]), "twonn_own": twonn(own[name])}
                        for name in own}})
                return got
            callback.recorded = recorded

    fit = fit_timed(["+exp=cifar10_id", f"trainer.max_epochs={epochs}", "callbacks.activation_id.splits=[val]",
                     "callbacks.activation_id.estimators=[twonn]", "callbacks.activation_id.figure=false"] + common,
                    root / "recording", "epoch", callbacks=(Compare(),))
    results.add("recording_vs_own_forward", {"epochs": epochs, "checks": checks, "measurements": len(fit["measure_s"])})


def bench_contention(results: Results, epochs: int, quick: bool, seconds: float = 0.3) -> None:
    """What a worker thread costs ResNet-18's training thread, by the kind of work it does: a fit without
    ActivationID where every 2nd epoch (from epoch 2) starts a thread at its first batch doing `seconds` (timed
    alone) of (a) GPU work with few Python calls: float16 matmuls on its own CUDA stream; (b) Python only: a loop
    that holds the interpreter; (c) many small PyTorch ops on its own stream, as the neighbour search issues them.
    Share = median span of the epochs with the thread / without − 1 (paired, as resnet_paired). A share near
    seconds/epoch for (a) says the GPU is the shared resource, for (b) the interpreter."""
    import threading

    import pytorch_lightning as pl

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cuda = device.type == "cuda"
    a = torch.randn(4096 if cuda else 256, 4096 if cuda else 256, device=device,
                    dtype=torch.float16 if cuda else torch.float32)
    small = torch.randn(256, 64, device=device)

    def gpu(n: int) -> None:
        for _ in range(n):
            a @ a

    def python(n: int) -> None:
        total = 0
        for i in range(n):
            total += i * i

    def small_ops(n: int) -> None:
        x = small
        for _ in range(n):
            x = (x * 1.0001).clamp_(-1e3, 1e3)

    def sized(job: Callable[[int], None], n: int = 10) -> int:
        """The count that takes `seconds` alone (GPU synchronised), from doubling trial runs after a warm-up."""
        job(2)  # cuBLAS and the allocator initialise on the first call
        while True:
            sync()
            start = time.perf_counter()
            job(n)
            sync()
            took = time.perf_counter() - start
            if took > seconds / 4:
                return max(1, int(n * seconds / took))
            n *= 2

    class Worker(pl.Callback):
        def __init__(self, job: Callable[[int], None], n: int) -> None:
            self.job, self.n, self.threads, self.stream = job, n, [], None

        def on_train_epoch_start(self, trainer, pl_module) -> None:
            if trainer.current_epoch >= 2 and trainer.current_epoch % 2 == 0:
                def run() -> None:
                    if cuda:
                        self.stream = self.stream or torch.cuda.Stream()
                        with torch.cuda.stream(self.stream):
                            self.job(self.n)
                        self.stream.synchronize()
                    else:
                        self.job(self.n)
                thread = threading.Thread(target=run, daemon=True)
                thread.start()
                self.threads.append(thread)

        def on_train_end(self, trainer, pl_module) -> None:
            for thread in self.threads:
                thread.join()

    root, common = cifar_setup(quick)
    common.append(f"trainer.max_epochs={epochs}")
    for name, job in (("gpu_matmuls", gpu), ("python_loop", python), ("small_torch_ops", small_ops)):
        n = sized(job)
        fit = fit_timed(["+exp=cifar10"] + common, root / name, "epoch", (Worker(job, n),))
        spans = fit["per_epoch_s"]
        loaded, plain = spans[2::2], spans[1::2]
        with_t, without = statistics.median(loaded), statistics.median(plain)
        results.add("contention", {"job": name, "count": n, "job_alone_s": seconds, "epochs": epochs,
                                   "median_span_with_thread_s": with_t, "median_span_without_s": without,
                                   "share": with_t / without - 1, "thread_cost_vs_alone": (with_t - without) / seconds,
                                   "per_epoch_s": spans})


def bench_background(results: Results, quick: bool) -> None:
    """The same seeded fit with ActivationID in the background and in line (Li's FC on mnist_mini, graph-captured
    steps on CUDA, every epoch, ID vs scale + overlap on the whole 500-digit val split): final weights and id.csv
    rows must agree (the background changes when rows are written, not what training or the estimates compute)."""
    from conftest import compose_config
    from idlab.id.report import read_csv
    from idlab.run import train

    root = Path(tempfile.mkdtemp())
    device = ["trainer=cpu"] if quick or not torch.cuda.is_available() else ["trainer=gpu"]
    common = ["data=mnist_mini", "model=fc", "callbacks=id", "trainer.max_epochs=2" if quick else "trainer.max_epochs=5",
              "callbacks.activation_id.num_samples=null", "test=false", "~callbacks.progress_bar",
              "+trainer.enable_progress_bar=false", "callbacks.activation_id.figure_every=2",
              "callbacks.activation_id.estimators=[twonn,{name: id_scaling, range_max: 16},{name: overlap, k: 10}]",
              f"paths.data_dir={REPO / 'data'}", *device]
    runs = {}
    said: list[str] = []  # the callback's log line says whether the worker had its own CUDA stream
    handler = logging.Handler()
    handler.emit = lambda record: said.append(record.getMessage())
    logging.getLogger("idlab.callbacks.activation_id").addHandler(handler)
    logging.getLogger("idlab.callbacks.activation_id").setLevel(logging.INFO)
    for background in ("true", "false"):
        out = root / background
        cfg = compose_config(common + [f"callbacks.activation_id.background={background}"], out, fast=False)
        start = time.perf_counter()
        metrics = train(cfg)
        state = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")["state_dict"]
        runs[background] = {"wall_s": time.perf_counter() - start, "rows": read_csv(out / "id.csv"), "state": state,
                            "val_acc": metrics.get("val/acc")}
    a, b = runs["true"], runs["false"]
    rel = [abs(x.value - y.value) / max(abs(y.value), 1e-12) for x, y in zip(a["rows"], b["rows"])]
    results.add("background_equivalence", {
        "device": device[0], "rows": len(b["rows"]), "same_keys": [r[:4] for r in map(astuple, a["rows"])]
        == [r[:4] for r in map(astuple, b["rows"])], "rows_equal": a["rows"] == b["rows"],
        "max_rel_value_diff": max(rel, default=float("nan")),
        "weights_bitwise": all(torch.equal(a["state"][k], b["state"][k]) for k in b["state"]),
        "val_acc": [a["val_acc"], b["val_acc"]], "wall_s": [a["wall_s"], b["wall_s"]],
        "worker": [m for m in said if "worker thread" in m]})


def bench_grokking(results: Results, steps: int, quick: bool, base_again: bool = False) -> None:
    """Mod-97 transformer: wall time per 500 steps with and without ActivationID (every 500 steps, train+val)."""
    common = ["trainer.max_epochs=-1", f"trainer.max_steps={steps}"]
    if quick:
        common += ["data.p=23", "trainer=cpu", "data.on_device=false"]
    root = Path(tempfile.mkdtemp())
    base = fit_timed(["+exp=math_equations"] + common, root / "base", "500 steps")
    with_id = fit_timed(["+exp=math_equations_id"] + common, root / "id", "500 steps")
    entry = summarise(base, with_id, "per_500_steps_s")
    if base_again:  # the base fit once more, after the ID fit: tells noise and run order from the callback's cost
        entry["base_again"] = fit_timed(["+exp=math_equations"] + common, root / "base2", "500 steps")
        entry["median_span_base_again_s"] = steady(entry["base_again"]["per_500_steps_s"])
    results.add("grokking_mod97", entry)


def steady(spans: list[float]) -> float:
    """Median span, the first dropped as warm-up when there are more than two."""
    return statistics.median(spans[1:] if len(spans) > 2 else spans)


def summarise(base: dict, with_id: dict, span: str) -> dict:
    """Median span with and without the callback (first span dropped as warm-up), and the overhead ratios."""
    base_span, id_span = steady(base[span]), steady(with_id[span])
    measures = with_id["measure_s"]
    measure = statistics.median(measures) if measures else float("nan")
    outside = [s - m for s, m in zip(with_id[span], measures)]  # span k opens with measurement k
    return {"base": base, "with_id": with_id, "median_span_base_s": base_span, "median_span_with_id_s": id_span,
            "overhead_from_spans": id_span / base_span - 1, "median_measure_s": measure,
            "mean_measure_s": statistics.mean(measures) if measures else float("nan"),
            "overhead_from_measure": measure / base_span,
            "median_span_minus_measure_s": steady(outside) if outside else float("nan")}


def main() -> None:
    """Parse arguments and run the chosen parts."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("."))
    parser.add_argument("--parts", default="knn,scaling,probe,resnet,grokking")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check the script on a CPU")
    parser.add_argument("--skdim-budget", type=float, default=150.0, help="seconds of skdim CPU time at most")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--base-again", action="store_true",
                        help="grokking, resnet: run the base fit again after the ID fits")
    parser.add_argument("--override", action="append", default=[],
                        help="resnet_paired: an extra override of the cifar10_id fits (repeatable)")
    parser.add_argument("--variant", action="append", default=None,
                        help="resnet_paired: one fit's overrides, space-separated (repeatable; '' for none)")
    parser.add_argument("--backgrounds", default="true,false", help="resnet_paired: background settings to fit")
    parser.add_argument("--search-stats", action="store_true",
                        help="resnet_paired: record each search's first-tier margins (adds to the measured time)")
    parser.add_argument("--no-twonn-only", action="store_true", help="resnet: skip the TwoNN-alone fit")
    parser.add_argument("--repeats", type=int, default=3,
                        help="scaling: timed calls after a warm-up (0: one cold call)")
    parser.add_argument("--dadapy", type=Path, default=REPO / "bench" / "dadapy_reference.json",
                        help="DADApy's results and CPU times (bench/dadapy_reference.py)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = Results(args.out / "id_speed.json")
    parts = args.parts.split(",")
    if "cluster" in parts:
        bench_cluster(results, args.quick)
    if "knn" in parts:
        sizes, features = ([300, 600], [64, 512]) if args.quick else ([2000, 10_000], [512, 8192, 65_536])
        bench_knn(results, sizes, features, args.skdim_budget)
    if "scaling" in parts:
        bench_scaling(results, [(600, 64)] if args.quick else [(10_000, 512), (10_000, 8192)], args.dadapy,
                      args.repeats)
    if "probe" in parts:
        bench_probe(results, 300 if args.quick else 10_000, args.quick)
    if "resnet" in parts:
        bench_resnet(results, args.epochs, args.quick, not args.no_twonn_only, args.base_again)
    if "resnet_paired" in parts:
        bench_resnet_paired(results, args.epochs, args.quick, args.override, tuple(args.backgrounds.split(",")),
                            args.search_stats, [v.split() for v in args.variant] if args.variant else None)
    if "recording" in parts:
        bench_recording(results, args.epochs, args.quick)
    if "contention" in parts:
        bench_contention(results, args.epochs, args.quick)
    if "background" in parts:
        bench_background(results, args.quick)
    if "grokking" in parts:
        bench_grokking(results, args.steps, args.quick, args.base_again)


if __name__ == "__main__":
    main()
