"""DADApy's CPU path on the ID-vs-scale benchmark data: the reference bench/id_speed.py --parts scaling compares to.

DADApy pins numpy < 2, so it runs in a side environment, not in idlab's:

    python3 -m venv /tmp/dadapy_env && /tmp/dadapy_env/bin/pip install dadapy 'numpy<2'
    /tmp/dadapy_env/bin/python bench/dadapy_reference.py --out bench/dadapy_reference.json [--quick]

Writes, per (N, F): DADApy's return_id_scaling_gride(range_max=64) (ids, errors, scales), return_label_overlap
(k=30, plain and class-weighted) and return_id_scaling_2NN, their wall times on this machine's CPU, and a checksum
of the data. `reference_data` needs numpy only, so idlab's benchmark regenerates the very same points.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

SIZES = [(10_000, 512), (10_000, 8_192)]
QUICK_SIZES = [(600, 64)]
LATENT = 10
CLASSES = 10


def reference_data(n: int, features: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(float32 points (n, features), int64 labels): tanh of a random linear map of 10-D Gaussian latents, labels
    the argmax of a random linear read-out of the latents (10 spatially coherent classes)."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, LATENT))
    w = rng.standard_normal((LATENT, features)) / np.sqrt(LATENT)
    readout = rng.standard_normal((LATENT, CLASSES))
    return np.tanh(z @ w).astype(np.float32), np.argmax(z @ readout, axis=1).astype(np.int64)


def checksum(x: np.ndarray) -> str:
    """SHA-256 of the array's bytes (C order): the same data on both sides of the comparison."""
    return hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest()


def timed(fn):
    """(seconds, result) of one call."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def run(n: int, features: int, decimation: bool) -> dict:
    """DADApy on one data set: the ID-vs-scale curve and label overlap from one Data object (one search)."""
    from dadapy import Data

    x, labels = reference_data(n, features)
    load = os.getloadavg()[0]  # the CPU is shared: its load at the start, to read the times by
    data = Data(coordinates=x)
    gride_s, (ids, errors, scales) = timed(lambda: data.return_id_scaling_gride(range_max=64))
    overlap_s, overlap = timed(lambda: data.return_label_overlap(labels, k=30, weighted=False))
    weighted = data.return_label_overlap(labels, k=30, weighted=True)
    entry = {"N": n, "F": features, "checksum": checksum(x), "gride_ids": ids.tolist(),
             "gride_errors": errors.tolist(), "gride_scales": scales.tolist(), "label_overlap": float(overlap),
             "label_overlap_weighted": float(weighted), "gride_s": gride_s, "label_overlap_s": overlap_s,
             "curve_plus_overlap_s": gride_s + overlap_s, "load_average_1min_at_start": load}
    if decimation:
        twonn_s, (ids2, errors2, scales2) = timed(lambda: Data(coordinates=x).return_id_scaling_2NN())
        entry.update(twonn_decimation_ids=ids2.tolist(), twonn_decimation_errors=errors2.tolist(),
                     twonn_decimation_scales=scales2.tolist(), twonn_decimation_s=twonn_s)
    return entry


def main() -> None:
    """Run every size and write the JSON file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/dadapy_reference.json"))
    parser.add_argument("--quick", action="store_true", help="one tiny size, to check the script")
    parser.add_argument("--no-decimation", action="store_true", help="skip return_id_scaling_2NN (the slow part)")
    args = parser.parse_args()
    from importlib.metadata import version

    results = {"dadapy": version("dadapy"),
               "numpy": np.__version__, "cpu": platform.processor() or platform.machine(),
               "cpu_count": os.cpu_count(), "date": time.strftime("%Y-%m-%d"), "entries": []}
    for n, features in QUICK_SIZES if args.quick else SIZES:
        results["entries"].append(run(n, features, not args.no_decimation))
        print(json.dumps(results["entries"][-1])[:300], flush=True)
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
