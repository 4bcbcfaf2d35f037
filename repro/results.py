"""docs/results.md (and docs/figures/) from the run folders: for every row the paper's number beside full MNIST
against Li's global baseline 1.0, full MNIST against the directly trained network (Li's "individual" baseline) and
mnist_mini; every verdict is a claim evaluated on the measured numbers, and every number comes from the runs.

    python repro/results.py --unpack docs/runs     # unpack docs/runs/<scale>/*.tar.gz into --root, then render
    python repro/results.py [--root outputs/repro] [--doc docs/results.md] [--figures docs/figures]

The root holds <root>/full/<result>/... and <root>/mini/<result>/..., as repro/<scale>/<result>.sh write them.
"""
from __future__ import annotations

import argparse
import csv
import itertools
import json
import math
import os
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from idlab import RESULTS_CHANGES, RESULTS_VERSION  # noqa: E402
from repro import paper  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
NOT_RUN = "not yet run"
COLUMNS = (("full", "global"), ("full", "individual"), ("mini", "individual"))
HEADER = ("paper", "full MNIST, global baseline 1.0", "full MNIST, individual baseline", "mnist_mini, individual baseline")
BIG = 1e15  # the upper end of a d_int that was not reached within the grid


# ----------------------------------------------------------------------------------------------- reading run folders
def read_json(path: Path) -> dict | None:
    """A JSON object from a file, None when missing or unreadable."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def run_config(run_dir: Path) -> Any:
    """A run's resolved config (.hydra/config.yaml), None when absent."""
    from omegaconf import OmegaConf

    path = Path(run_dir) / ".hydra" / "config.yaml"
    return OmegaConf.load(path) if path.is_file() else None


@dataclass(frozen=True)
class Dim:
    """A d_int read off a sweep: the first grid value whose seed-mean reaches the target, or not reached."""

    value: float | None     # None: not reached up to `top`
    below: float            # the grid value before `value` (0 for the first): the d_int lies in (below, value]
    top: float              # largest value that bounds a d_int not reached (the largest swept, or `fall`'s peak)
    ci: tuple[float | None, float | None]
    missing: str            # "" when every seed of every value it depends on (and the baseline) finished
    fall: tuple[float, float, float, float] | None = None  # not reached and the metric falls from its peak at
    # larger values: (peak value, its mean, largest value, its mean); larger values then bound nothing

    def interval(self) -> tuple[float, float]:
        """Where the true d_int lies given the grid: (below, value] or (top, ∞)."""
        if self.value is None:
            return self.top * (1 + 1e-9), BIG
        return self.below + 1e-6 * max(1.0, self.below), self.value

    def text(self) -> str:
        """'750' or '> 2,000'."""
        return num(self.value) if self.value is not None else f"> {num(self.top)}"

    def cell(self) -> str:
        """'**750** (95 % CI 500–1,000)', '> 2,000 (not reached)', each with what is missing."""
        low, high = self.ci
        core = (f"**{num(self.value)}** (95 % CI {num(low)}–{num(high) if high is not None else 'not reached'})"
                if self.value is not None else f"> {num(self.top)} (not reached)")
        if self.fall is not None:
            peak, best, top, last = self.fall
            core = (f"> {num(peak)} (not reached: the metric peaks at {best:.3f} at {num(peak)} and falls to "
                    f"{last:.3f} by {num(top)}, so the larger values failed to train and bound nothing)")
        return core + (f"; incomplete: {self.missing}" if self.missing else "")


class Sweep:
    """One sweep folder as sweep.py left it: summary.json, results.csv and the runs' metrics and configs."""

    def __init__(self, folder: Path, summary: dict) -> None:
        self.folder, self.summary = folder, summary
        self.configs: dict[str, Any] = {}
        self.spec = summary.get("spec", {})
        self.seeds = [str(s) for s in self.spec.get("seeds", [])]
        self.planned = [float(v) for v in self.spec.get("values", [])]
        self.points = {float(p["value"]): {str(k): float(v) for k, v in p.get("seeds", {}).items()}
                       for p in summary.get("points", [])}
        self.rows = []
        if (folder / "results.csv").is_file():
            with open(folder / "results.csv", newline="") as handle:
                self.rows = list(csv.DictReader(handle))

    @property
    def threshold(self) -> float:
        """The sweep's fraction of the baseline (0.9 for d_int90, 0.89 for memorisation)."""
        return float(self.summary.get("threshold", self.spec.get("threshold", 0.9)))

    @property
    def baseline(self) -> dict:
        """summary.json's baseline block (kind full/given, value, std, seeds)."""
        return self.summary.get("baseline", {})

    def values(self) -> list[float]:
        """Every swept value: the plan's and any with results."""
        return sorted(set(self.planned) | set(self.points))

    def mean(self, value: float) -> float | None:
        """Seed-mean of the metric at one value."""
        seeds = self.points.get(float(value), {})
        return float(np.mean(list(seeds.values()))) if seeds else None

    def missing(self, upto: float | None) -> str:
        """Which planned seeds lack a result at values ≤ upto (all values when None), baseline included."""
        gaps = []
        if self.baseline.get("kind") == "full" and len(self.baseline.get("seeds", {})) < len(self.seeds):
            gaps.append(f"baseline {len(self.baseline.get('seeds', {}))} of {len(self.seeds)} seeds")
        for value in self.values():
            if upto is not None and value > upto:
                break
            n = len(self.points.get(value, {}))
            if n < len(self.seeds):
                gaps.append(f"{num(value)}: {n} of {len(self.seeds)} seeds")
        return "; ".join(gaps)

    def dim(self, baseline: str) -> Dim | None:
        """The d_int against the sweep's own baseline ("individual") or Li's global 1.0 ("global"); None without
        results (no finished point, or no finished baseline)."""
        values = [v for v in self.values() if self.points.get(v)]
        if not values:
            return None
        if baseline == "global":
            from idlab.sweep.analysis import intrinsic_dimension

            # one column per planned seed, NaN where it has no result (the analysis pairs seeds across values)
            table = {v: [self.points[v].get(seed, float("nan")) for seed in self.seeds] for v in values}
            found = intrinsic_dimension(table, 1.0, self.threshold, n_boot=int(self.spec.get("bootstrap", 1000)))
            value, ci = found.value, (found.ci_low, found.ci_high)
        else:
            block = self.summary.get(f"d_int{self.threshold * 100:g}") or {}
            if self.baseline.get("value") is None:
                return None
            value, ci = block.get("value"), tuple(block.get("ci95") or (None, None))
        grid = self.values()
        below = max((v for v in grid if value is not None and v < value), default=0.0)
        missing = self.missing(value)
        if baseline == "global":  # the global baseline is a number: the baseline runs do not matter
            missing = "; ".join(g for g in missing.split("; ") if g and not g.startswith("baseline"))
        top, fall = max(grid), None
        if value is None:  # a metric that falls at larger values says nothing about the d_int beyond its peak
            from idlab.sweep.results import metric_falls

            fall = metric_falls({v: m for v in values if (m := self.mean(v)) is not None})
            top = fall[0] if fall else top
        return Dim(None if value is None else float(value), below, top, ci, missing, fall)

    def run_dirs(self, role: str) -> list[Path]:
        """Folders of the finished runs of one role (results.csv's run_dir, found under this folder's runs/)."""
        found = (self.folder / "runs" / Path(row.get("run_dir", "")).name for row in self.rows
                 if row.get("status") == "done" and row.get("role") == role)
        return [path for path in found if path.is_dir()]

    def metric_of_runs(self, key: str, role: str = "point") -> dict[float, float]:
        """Swept value → a metrics.json entry of its first finished run (e.g. params/trainable)."""
        out: dict[float, float] = {}
        for row in self.rows:
            if row.get("role") == role and row.get("status") == "done" and row.get("value"):
                metrics = read_json(self.folder / "runs" / Path(row["run_dir"]).name / "metrics.json") or {}
                if isinstance(metrics.get(key), (int, float)):
                    out.setdefault(float(row["value"]), float(metrics[key]))
        return out

    def baseline_metric(self, key: str) -> float | None:
        """A metrics.json entry of a finished baseline run (e.g. params/total)."""
        for run in self.run_dirs("baseline"):
            value = (read_json(run / "metrics.json") or {}).get(key)
            if isinstance(value, (int, float)):
                return float(value)
        return None

    def config(self, role: str = "point") -> Any:
        """The resolved config of one finished run of this role (read once)."""
        if role not in self.configs:
            self.configs[role] = next((c for r in self.run_dirs(role) if (c := run_config(r)) is not None), None)
        return self.configs[role]


def load(folder: Path) -> Sweep | None:
    """The sweep in `folder` (its summary.json), None when it has none."""
    summary = read_json(Path(folder) / "summary.json")
    return Sweep(Path(folder), summary) if summary is not None else None


def scalars(run_dir: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """tag → (steps, values) of a train.py run, from scalars.csv (written from tensorboard when missing)."""
    path = Path(run_dir) / "scalars.csv"
    if not path.is_file() and (Path(run_dir) / "tensorboard").is_dir():
        from repro.call import scalars_csv

        scalars_csv(Path(run_dir))
    if not path.is_file():
        return {}
    out: dict[str, tuple[list, list]] = {}
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            steps, values = out.setdefault(row["tag"], ([], []))
            steps.append(int(row["step"]))
            values.append(float(row["value"]))
    return {k: (np.asarray(s), np.asarray(v)) for k, (s, v) in out.items()}


def llid(run_dir: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Steps and TwoNN ID of the last tracked layer (Brown et al.'s LLID) on `split`, from id.csv."""
    path = Path(run_dir) / "id.csv"
    if not path.is_file():
        return np.array([]), np.array([])
    with open(path, newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["split"] == split and r["estimator"] == "twonn"]
    if not rows:
        return np.array([]), np.array([])
    last = list(dict.fromkeys(r["layer"] for r in rows))[-1]  # rows are written in depth order
    rows = [r for r in rows if r["layer"] == last]
    return np.array([int(r["step"]) for r in rows]), np.array([float(r["value"]) for r in rows])


def llid_scales(run_dir: Path, split: str) -> tuple[np.ndarray, list[int], np.ndarray, np.ndarray]:
    """The LLID layer's ID-vs-scale curves (id_scaling/n<r> rows of id.csv) on `split`: steps, the ranks r, and
    (steps × ranks) arrays of IDs and scales; empty when the run measured no ID vs scale."""
    path = Path(run_dir) / "id.csv"
    empty = (np.array([]), [], np.empty((0, 0)), np.empty((0, 0)))
    if not path.is_file():
        return empty
    with open(path, newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["split"] == split]
    layers = list(dict.fromkeys(r["layer"] for r in rows if r["estimator"] == "twonn"))
    rows = [r for r in rows if layers and r["layer"] == layers[-1] and r["estimator"].startswith("id_scaling/n")]
    if not rows:
        return empty
    steps = sorted({int(r["step"]) for r in rows})
    ranks = sorted({int(r["estimator"].rsplit("/n", 1)[1]) for r in rows})
    ids, scales = np.full((len(steps), len(ranks)), np.nan), np.full((len(steps), len(ranks)), np.nan)
    for r in rows:
        i, j = steps.index(int(r["step"])), ranks.index(int(r["estimator"].rsplit("/n", 1)[1]))
        ids[i, j], scales[i, j] = float(r["value"]), float(r["scale"] or "nan")
    return np.array(steps), ranks, ids, scales


def train_size(cfg: Any) -> int | None:
    """Training examples of a run's data config (MNIST: 60,000 − val; mnist_mini: 5,000 − val − test)."""
    target = str(cfg.data.get("_target_", "")) if cfg is not None else ""
    if target.endswith("MNISTMini"):
        return 5000 - int(cfg.data.val_size) - int(cfg.data.test_size)
    if target.endswith(".MNIST"):
        return 60000 - int(cfg.data.val_size)
    return None


# ------------------------------------------------------------------------------------------------- claims and cells
@dataclass(frozen=True)
class Q:
    """A measured quantity for a claim: the interval it lies in, how it reads, and what is missing."""

    lo: float
    hi: float
    text: str
    missing: str = ""


def q_dim(dim: Dim | None) -> Q | None:
    """A d_int as a quantity."""
    return None if dim is None else Q(*dim.interval(), dim.text(), dim.missing)


def q_num(value: float | None, text: str | None = None) -> Q | None:
    """An exact number as a quantity."""
    return None if value is None else Q(float(value), float(value), text or num(value))


def verdict(test: Callable[[dict[str, float]], bool], inputs: dict[str, Q | None]) -> str:
    """Evaluate a claim at every corner of its inputs' intervals: 'holds — …', 'does not hold — …',
    'undetermined — …' (the grid, or missing runs, leave it open), or 'not yet run'."""
    absent = [name for name, q in inputs.items() if q is None]
    if absent:
        return NOT_RUN + (f" ({', '.join(absent)})" if len(absent) < len(inputs) else "")
    evidence = "; ".join(f"{name} {q.text}" for name, q in inputs.items())
    names = list(inputs)
    outcomes = {bool(test(dict(zip(names, corner))))
                for corner in itertools.product(*((inputs[n].lo, inputs[n].hi) for n in names))}
    missing = "; ".join(f"{n}: {inputs[n].missing}" for n in names if inputs[n].missing)
    if missing:
        return f"undetermined (incomplete: {missing}) — {evidence}"
    if len(outcomes) > 1:
        return f"undetermined at this grid's resolution — {evidence}"
    return ("**holds** — " if outcomes.pop() else "**does not hold** — ") + evidence


def num(x: float | None) -> str:
    """1,400 / 0.873 / 2.5 / n/a."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:,.0f}" if float(x).is_integer() or abs(x) >= 100 else f"{x:.3g}"


def ratio_text(a: Dim | None, b: Dim | None) -> str:
    """a / b from the grid values, with a bound when one of them was not reached."""
    if a is None or b is None or (a.value is None and b.value is None):
        return NOT_RUN if a is None or b is None else "n/a (neither reached)"
    if a.value is None:
        return f"> {num(a.top / b.value)}×"
    if b.value is None:
        return f"< {num(a.value / b.top)}×"
    return f"{num(a.value / b.value)}×"


def base_text(sweep: Sweep | None, column: tuple[str, str]) -> str:
    """The baseline a column's d_int is relative to."""
    if sweep is None:
        return NOT_RUN
    if column[1] == "global":
        return f"1.0 (target {num(sweep.threshold)})"
    base = sweep.baseline
    if base.get("value") is None:
        return NOT_RUN
    spread = f" ± {base['std']:.3f}" if base.get("std") else ""
    return f"{base['value']:.3f}{spread} ({len(base.get('seeds', {})) or 'given'}{' seeds' if base.get('seeds') else ''})"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table."""
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


class Root:
    """The run folders of both scales: root/full/... and root/mini/..."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.cache: dict[Path, Sweep | None] = {}

    def sweep(self, scale: str, rel: str) -> Sweep | None:
        """The sweep root/scale/rel (cached)."""
        folder = self.root / scale / rel
        if folder not in self.cache:
            self.cache[folder] = load(folder)
        return self.cache[folder]

    def dim(self, scale: str, rel: str, baseline: str) -> Dim | None:
        """A sweep's d_int against one baseline."""
        sweep = self.sweep(scale, rel)
        return None if sweep is None else sweep.dim(baseline)

    def folders(self, scale: str, pattern: str) -> list[Path]:
        """Sub-folders of root/scale matching a glob, sorted."""
        base = self.root / scale
        return sorted(p for p in base.glob(pattern) if p.is_dir()) if base.is_dir() else []


def claim_rows(root: Root, claims: list[tuple[str, Callable[[str, str], dict[str, Q | None]],
                                              Callable[[dict[str, float]], bool]]]) -> list[str]:
    """A table of claims × columns: each cell the claim evaluated on that column's numbers."""
    rows = [[text, *(verdict(test, inputs(scale, base)) for scale, base in COLUMNS)] for text, inputs, test in claims]
    return table(["claim (paper)", *HEADER[1:]], rows)


# ------------------------------------------------------------------------------------------------------ the sections
LI_NETS = (("fc", "FC 784-200-200-10"), ("lenet", "LeNet"), ("fc_shuffled_pixels", "FC, shuffled pixels"),
           ("lenet_shuffled_pixels", "LeNet, shuffled pixels"))


def section_li(root: Root) -> list[str]:
    """Result 1: FC vs LeNet and shuffled pixels."""
    rows = []
    for key, label in LI_NETS:
        ref = paper.LI_MNIST[key]
        cited = f"{num(ref['global'])} (global)" + (f"; {num(ref['individual'])} (individual)" if ref["individual"]
                                                     else "")
        dims = [root.dim(s, f"li_mnist/{key}", b) for s, b in COLUMNS]
        rows.append([f"{label}: d_int90", cited, *(d.cell() if d else NOT_RUN for d in dims)])
        rows.append([f"{label}: baseline test accuracy", "—",
                     *(base_text(root.sweep(s, f"li_mnist/{key}"), (s, b)) for s, b in COLUMNS)])
    for plain, shuffled, label, cited in (("lenet", "lenet_shuffled_pixels", "LeNet", "4.8×"),
                                          ("fc", "fc_shuffled_pixels", "FC", "1.0×")):
        rows.append([f"{label}: shuffled / plain d_int90", cited,
                     *(ratio_text(root.dim(s, f"li_mnist/{shuffled}", b), root.dim(s, f"li_mnist/{plain}", b))
                       for s, b in COLUMNS)])

    def dims(*keys: str) -> Callable[[str, str], dict[str, Q | None]]:
        return lambda s, b: {k: q_dim(root.dim(s, f"li_mnist/{k}", b)) for k in keys}
    claims = [("LeNet's d_int90 is below FC's (paper: 290 < 750)", dims("fc", "lenet"),
               lambda d: d["lenet"] < d["fc"]),
              ("shuffling pixels raises LeNet's d_int90 at least 2× (paper: 4.8×)", dims("lenet", "lenet_shuffled_pixels"),
               lambda d: d["lenet_shuffled_pixels"] >= 2 * d["lenet"]),
              ("shuffling pixels moves FC's d_int90 by less than 1.5× (paper: 1.0×)", dims("fc", "fc_shuffled_pixels"),
               lambda d: d["fc"] / 1.5 < d["fc_shuffled_pixels"] < 1.5 * d["fc"])]
    for key, label in LI_NETS:
        target = paper.LI_MNIST[key]["global"]
        claims.append((f"{label}: d_int90 within 1.5× of the paper's {num(target)}", dims(key),
                       lambda d, k=key, t=target: t / 1.5 <= d[k] <= 1.5 * t))
    return table(["quantity", *HEADER], rows) + [""] + claim_rows(root, claims)


def grid_nets(root: Root, scale: str) -> list[tuple[str, str]]:
    """(label, sweep path) of the width × depth grid at one scale: 200×2 from result 1, the corners from 1b."""
    corners = [f"li_mnist_grid/{p.name}" for p in root.folders(scale, "li_mnist_grid/w*_l*")]
    nets = [("200×2", "li_mnist/fc")] + [(c.split("/")[1][1:].replace("_l", "×"), c) for c in corners]
    return [(label, rel) for label, rel in nets if root.sweep(scale, rel) is not None]


def section_grid(root: Root) -> list[str]:
    """Result 1b: d_int90 over the FC width × depth grid."""
    labels = sorted({label for scale in ("full", "mini") for label, _ in grid_nets(root, scale)},
                    key=lambda t: tuple(int(x) for x in t.split("×")))
    rel = {label: r for scale in ("full", "mini") for label, r in grid_nets(root, scale)}
    rows = []
    for label in labels:
        total = next((t for s in ("full", "mini") if (sw := root.sweep(s, rel[label]))
                      and (t := sw.baseline_metric("params/total"))), None)
        rows.append([f"FC {label}: d_int90 (D = {num(total)})", "—",
                     *(d.cell() if (d := root.dim(s, rel[label], b)) else NOT_RUN for s, b in COLUMNS)])

    def inputs(scale: str, base: str) -> dict[str, Q | None]:
        nets = grid_nets(root, scale)
        if len(nets) < 5:
            return {"the four corners and 200×2": None}
        out = {f"d({label})": q_dim(root.dim(scale, r, base)) for label, r in nets}
        totals = [root.sweep(scale, r).baseline_metric("params/total") for _, r in nets]
        out["D ratio"] = q_num(max(totals) / min(totals) if None not in totals else None)
        return out

    def varies_little(d: dict[str, float]) -> bool:
        dims = [v for k, v in d.items() if k.startswith("d(")]
        return d["D ratio"] >= 20 and max(dims) / min(dims) < 2
    claim = ("d_int90 varies less than 2× across the grid while D varies at least 20× (paper: 1.33× vs 24.1×)",
             inputs, varies_little)
    return (table(["quantity", *HEADER], rows) if rows else [f"Width × depth grid: {NOT_RUN}."]) + [""] + \
        claim_rows(root, [claim])


def memorisation_scales(root: Root, scale: str) -> list[tuple[int, float, str, str]]:
    """(training labels, θ_d's step size, real-label sweep, shuffled-label sweep) per label count and step size at
    one scale, by count then step size (largest first: the exp file's 1e-2 before a smaller-step repeat)."""
    out = []
    for shuffled in root.folders(scale, "memorisation/shuffled_labels*"):
        real = shuffled.parent / shuffled.name.replace("shuffled_labels", "real_labels")
        sweep = root.sweep(scale, f"memorisation/{shuffled.name}")
        point = sweep.config() if sweep else None
        labels = train_size(point or (sweep.config("baseline") if sweep else None))
        if labels is not None:
            lr = float(point.optim.optimizer.lr) if point is not None else float("nan")
            out.append((labels, lr, f"memorisation/{real.name}", f"memorisation/{shuffled.name}"))
    return sorted(out, key=lambda t: (t[0], -t[1]))


def step_text(lr: float) -> str:
    """Adam's step size on θ_d as the tables write it: 'Adam 1e-2' ('step size unknown' when no run recorded it)."""
    if not math.isfinite(lr):
        return "step size unknown"
    mantissa, exponent = f"{lr:.0e}".split("e")
    return f"Adam {mantissa}e{int(exponent)}"


def section_memorisation(root: Root) -> list[str]:
    """Result 2: d_int90 of training accuracy with real vs shuffled labels, per label count and step size."""
    def cells(kind: str) -> list[str]:
        out = []
        for scale, base in COLUMNS:
            parts = []
            for labels, lr, real, shuffled in memorisation_scales(root, scale):
                d_real, d_shuf = root.dim(scale, real, base), root.dim(scale, shuffled, base)
                text = {"real": d_real.cell() if d_real else NOT_RUN, "shuffled": d_shuf.cell() if d_shuf else NOT_RUN,
                        "per_label": (f"{num(d_shuf.value / labels)}" if d_shuf and d_shuf.value
                                      else (f"> {num(d_shuf.top / labels)}" if d_shuf else NOT_RUN)),
                        "gap": ratio_text(d_shuf, d_real)}[kind]
                parts.append(f"{text} at {labels:,} labels, {step_text(lr)}")
            out.append("<br>".join(parts) or NOT_RUN)
        return out
    ref = paper.LI_MEMORISATION
    rows = [["real labels: d_int90 of train accuracy", "—", *cells("real")],
            ["100 % shuffled labels: d_int90 of train accuracy", f"{num(ref['d_int90'])} at {ref['labels']:,} labels, "
             "Adam 1e-4", *cells("shuffled")],
            ["floats per memorised label (shuffled d_int90 ÷ labels)", num(ref["per_label"]), *cells("per_label")],
            ["shuffled / real d_int90", "—", *cells("gap")]]

    def largest(scale: str, base: str) -> dict[str, Q | None]:
        """At the largest label count, the step size whose shuffled-label sweep reached its target at the smallest
        d (a sweep that never reached it ranks last): a too-large step fails to train and bounds nothing."""
        scales = memorisation_scales(root, scale)
        if not scales:
            return {"shuffled": None, "real": None}
        top = [s for s in scales if s[0] == scales[-1][0]]

        def rank(entry: tuple[int, float, str, str]) -> float:
            dim = root.dim(scale, entry[3], base)
            return dim.value if dim is not None and dim.value is not None else float("inf")
        _, _, real, shuffled = min(top, key=rank)
        return {"shuffled": q_dim(root.dim(scale, shuffled, base)), "real": q_dim(root.dim(scale, real, base))}

    def two_counts(scale: str, base: str) -> dict[str, Q | None]:
        """The smallest and largest label count measured at one step size (the first such step size)."""
        scales = memorisation_scales(root, scale)
        for lr in dict.fromkeys(s[1] for s in scales):
            same = [s for s in scales if s[1] == lr]
            if same[-1][0] > same[0][0]:
                out: dict[str, Q | None] = {}
                for labels, _, real, shuffled in (same[0], same[-1]):
                    out[f"shuffled@{labels:,}"] = q_dim(root.dim(scale, shuffled, base))
                    out[f"real@{labels:,}"] = q_dim(root.dim(scale, real, base))
                return out
        return {"two label counts": None}

    def grows(d: dict[str, float]) -> bool:
        shuf, real = [v for k, v in d.items() if k.startswith("shuffled")], [v for k, v in d.items() if k.startswith("real")]
        return shuf[1] / real[1] > shuf[0] / real[0]
    claims = [("at the largest label count, shuffled labels need at least 5× the d_int90 of real labels "
               "(paper: 190,000 vs 750 on test accuracy); where several step sizes ran, the one that memorised at "
               "the smallest d", largest, lambda d: d["shuffled"] >= 5 * d["real"]),
              ("the shuffled/real gap grows with the number of labels (memorising costs d per label), at one step "
               "size", two_counts, grows)]
    return table(["quantity", *HEADER], rows) + [""] + claim_rows(root, claims)


def section_lora(root: Root) -> list[str]:
    """Result 3: LoRA r90 against subspace d90 on the trainable-parameter axis."""
    def accuracy(scale: str) -> str:
        lora = root.sweep(scale, "lora_vs_subspace/lora")
        if lora is None:
            return NOT_RUN
        return ", ".join(f"r={v:g}: {lora.mean(v):.3f}" for v in lora.values() if lora.mean(v) is not None) or NOT_RUN

    def params_at_r90(scale: str, base: str) -> float | None:
        lora, dim = root.sweep(scale, "lora_vs_subspace/lora"), root.dim(scale, "lora_vs_subspace/lora", base)
        return lora.metric_of_runs("params/trainable").get(dim.value) if lora and dim and dim.value else None
    def lora_params(scale: str, base: str) -> Q | None:
        """Trainable parameters at r90; above those of the largest rank when r90 was not reached."""
        lora, dim = root.sweep(scale, "lora_vs_subspace/lora"), root.dim(scale, "lora_vs_subspace/lora", base)
        if lora is None or dim is None:
            return None
        if dim.value is not None:
            return q_num(params_at_r90(scale, base))
        top = max(lora.metric_of_runs("params/trainable").values(), default=0.0)
        return Q(top * (1 + 1e-9), BIG, f"> {num(top)} (r90 not reached)", dim.missing)
    rows = [["LoRA r90 (rank)", "— (Hu et al. report no r90)",
             *(d.cell() if (d := root.dim(s, "lora_vs_subspace/lora", b)) else NOT_RUN for s, b in COLUMNS)],
            ["LoRA trainable parameters at r90", "—", *(num(params_at_r90(s, b)) if params_at_r90(s, b) else
                                                        NOT_RUN for s, b in COLUMNS)],
            ["subspace d_int90 (= trainable parameters)", "—",
             *(d.cell() if (d := root.dim(s, "li_mnist/lenet", b)) else NOT_RUN for s, b in COLUMNS)],
            ["LoRA test accuracy by rank (seed mean)", "rises with r, saturates",
             *(accuracy(s) for s, _ in COLUMNS)]]

    def monotone(scale: str, _: str) -> dict[str, Q | None]:
        lora = root.sweep(scale, "lora_vs_subspace/lora")
        if lora is None or len([v for v in lora.values() if lora.points.get(v)]) < 2:
            return {"LoRA sweep": None}
        values = [v for v in lora.values() if lora.points.get(v)]
        means = [lora.mean(v) for v in values]
        stds = [float(np.std(list(lora.points[v].values()), ddof=1)) if len(lora.points[v]) > 1 else 0.0
                for v in values]
        drop = max(a - b - max(s, 0.005) for a, b, s in zip(means, means[1:], stds[1:]))
        return {"largest fall beyond one seed std": Q(drop, drop, f"{drop:+.3f}", lora.missing(None))}
    claims = [("LoRA accuracy does not fall as r grows, within one seed std (Hu et al.)", monotone,
               lambda d: d["largest fall beyond one seed std"] <= 0),
              ("at 90 %, LoRA needs more trainable parameters than the random subspace",
               lambda s, b: {"LoRA at r90": lora_params(s, b), "subspace d_int90": q_dim(root.dim(s, "li_mnist/lenet", b))},
               lambda d: d["LoRA at r90"] > d["subspace d_int90"])]
    return table(["quantity", *HEADER], rows) + [""] + claim_rows(root, claims)


def section_reproject(root: Root) -> list[str]:
    """Result 6: re-projection from a subspace-trained θ_A."""
    d_as = sorted({int(p.name[6:]) for s in ("full", "mini") for p in root.folders(s, "reproject/from_d*")})
    rows = [["from the init: d_int90", "—",
             *(d.cell() if (d := root.dim(s, "li_mnist/lenet", b)) else NOT_RUN for s, b in COLUMNS)]]
    for d_a in d_as:
        rows.append([f"d_A = {d_a}: θ_A test accuracy (seed mean)", "—",
                     *(num(acc) if (acc := first_accuracy(root.root / s / "reproject" / f"first_d{d_a}")) is not None
                       else NOT_RUN for s, _ in COLUMNS)])
        rows.append([f"d_A = {d_a}: fresh-subspace d_int90 (d_B)", "—",
                     *(d.cell() if (d := root.dim(s, f"reproject/from_d{d_a}", b)) else NOT_RUN for s, b in COLUMNS)])
    claims = [(f"d_A = {d_a}: re-projection saves dimensions, d_A + d_B90 < from-init d_int90",
               lambda s, b, a=d_a: {"d_B90": q_dim(root.dim(s, f"reproject/from_d{a}", b)),
                                    "from init": q_dim(root.dim(s, "li_mnist/lenet", b))},
               lambda d, a=d_a: a + d["d_B90"] < d["from init"]) for d_a in d_as]
    return table(["quantity", *HEADER], rows) + ([""] + claim_rows(root, claims) if claims else
                                                 ["", f"Re-projection sweeps: {NOT_RUN}."])


def first_accuracy(folder: Path) -> float | None:
    """Mean test accuracy of the first-subspace runs (seed<k>/metrics.json)."""
    values = [m["test/acc"] for d in sorted(folder.glob("seed*")) if (m := read_json(d / "metrics.json"))
              and isinstance(m.get("test/acc"), (int, float))]
    return float(np.mean(values)) if values else None


def seed_dirs(folder: Path) -> list[Path]:
    """seed<k> run folders under `folder`, by seed."""
    found = [d for d in Path(folder).glob("seed*") if d.is_dir() and d.name[4:].isdigit()]
    return sorted(found, key=lambda d: int(d.name[4:]))


def first_step(curve: tuple[np.ndarray, np.ndarray] | None, level: float) -> int | None:
    """The first logged step whose value reaches `level`."""
    if curve is None:
        return None
    hits = np.nonzero(curve[1] >= level)[0]
    return int(curve[0][hits[0]]) if hits.size else None


def scale_fall(drops: dict[int, float] | None) -> str:
    """The fall from the peak at each measured scale, e.g. '2: 41%, 4: 40%, …' (n/a without ID vs scale)."""
    return "n/a" if not drops else ", ".join(f"{rank}: {drop:.0%}" for rank, drop in drops.items())


def scale_claim(text: str, seeds: list[dict]) -> str:
    """A claim on the falls at every scale; undetermined for seeds without ID-vs-scale measurements."""
    if not seeds:
        return f"| {text} | {NOT_RUN} |"
    measured = [s for s in seeds if s["drops"]]
    if len(measured) < len(seeds):
        return f"| {text} | undetermined ({len(seeds) - len(measured)} of {len(seeds)} seeds measured no ID vs " \
               "scale at both the peak and the last step) |"
    worst = min(min(s["drops"].values()) for s in measured)
    held = worst >= 0.2
    return f"| {text} | {'**holds**' if held else '**does not hold**'} — {len(seeds)} seeds, smallest fall at any " \
           f"scale {worst:.0%} |"


def section_grokking(root: Root) -> list[str]:
    """Result 4 (mnist-free, one scale): steps to 99 % accuracy and the last-layer ID per setting and seed."""
    settings = [p for p in root.folders("mini", "grokking_id/frac*") if seed_dirs(p)]
    if not settings:
        return [f"Grokking runs: {NOT_RUN}."]
    rows, facts = [], {}
    for setting in settings:
        per_seed = []
        for run in seed_dirs(setting):
            tags, (steps, ids) = scalars(run), llid(run, "val")
            cfg = run_config(run)
            cap = int(cfg.trainer.max_steps) if cfg is not None else None
            val99, train99 = first_step(tags.get("val/acc"), 0.99), first_step(tags.get("train/acc"), 0.99)
            peak_drop = float(1 - ids[-1] / ids.max()) if ids.size else None
            # the same fall at every scale: the curve at the last step against the curve at the TwoNN peak's step
            scale_steps, ranks, curves, _ = llid_scales(run, "val")
            drops = None
            if ids.size and ranks and int(steps[np.argmax(ids)]) in scale_steps and scale_steps[-1] == steps[-1]:
                at_peak = curves[list(scale_steps).index(int(steps[np.argmax(ids)]))]
                drops = dict(zip(ranks, (1 - curves[-1] / at_peak).tolist()))
            stopped = "" if (run / "metrics.json").is_file() or not ids.size else \
                f" (stopped at step {num(int(steps[-1]))} of {num(cap) if cap else '?'})"
            per_seed.append({"val99": val99, "train99": train99, "cap": cap, "drop": peak_drop, "drops": drops,
                             "ids": (f"{ids[0]:.1f} → {ids.max():.1f} → {ids[-1]:.1f}" if ids.size else "n/a")
                             + stopped})
        facts[setting.name] = per_seed
        notes = paper.GROK_NOTES.get(setting.name)
        noted = "—" if notes is None else \
            f"{num(notes[0])} / {num(notes[1]) if notes[1] else f'not by {paper.GROK_NOTES_CAP:,}'}"
        rows.append([setting.name, noted, ", ".join(num(s["train99"]) if s["train99"] else "—" for s in per_seed),
                     ", ".join(num(s["val99"]) if s["val99"] else f"— (≤ {num(s['cap'])})" for s in per_seed),
                     "; ".join(s["ids"] for s in per_seed),
                     ", ".join(f"{s['drop']:.0%}" if s["drop"] is not None else "n/a" for s in per_seed),
                     "; ".join(scale_fall(s["drops"]) for s in per_seed)])
    out = table(["setting", "notes: train / val ≥ 99 % (1 seed)", "ours: train ≥ 99 % at step (per seed)",
                 "ours: val ≥ 99 % at step", "val LLID start → peak → end", "LLID fall from peak to end",
                 "the same fall at scales n2 = 2 … 64 (GRIDE)"], rows)

    def claim(text: str, seeds: list[dict], test: Callable[[dict], bool], show: Callable[[dict], str]) -> str:
        if not seeds:
            return f"| {text} | {NOT_RUN} |"
        if any(s["drop"] is None for s in seeds) and "LLID" in text:
            return f"| {text} | undetermined (no LLID measured) |"
        held = all(test(s) for s in seeds)
        return f"| {text} | {'**holds**' if held else '**does not hold**'} — {len(seeds)} seeds: " \
               f"{', '.join(show(s) for s in seeds)} |"
    wd1 = [s for n in facts if n.endswith("_wd1") for s in facts[n]]
    wd0 = [s for n in facts if n.endswith("_wd0") for s in facts[n]]
    grokked = [s for n in facts for s in facts[n] if s["val99"]]
    stuck = [s for n in facts for s in facts[n] if not s["val99"]]
    reached = lambda s: num(s["val99"]) if s["val99"] else f"— (≤ {num(s['cap'])})"  # noqa: E731
    fall = lambda s: f"{s['drop']:.0%}" if s["drop"] is not None else "n/a"  # noqa: E731
    out += ["", "| claim (paper) | modular arithmetic |", "|---|---|",
            claim("with weight decay 1 every seed reaches 99 % val accuracy within its step cap (Power et al.)", wd1,
                  lambda s: bool(s["val99"]), reached),
            claim(f"without weight decay no seed reaches 99 % val accuracy by its cap (notes: not by "
                  f"{paper.GROK_NOTES_CAP:,} steps)", wd0, lambda s: not s["val99"], reached),
            claim("every seed that groks ends with its val LLID at least 20 % below its peak (Brown et al.)", grokked,
                  lambda s: s["drop"] >= 0.2, fall),
            claim("no seed that does not grok does (Brown et al.: its ID stays high)", stuck,
                  lambda s: s["drop"] < 0.2, fall),
            scale_claim("every seed that groks ends with its val LLID at least 20 % below its peak at every scale "
                        "n2 = 2 … 64, not only at TwoNN's (GRIDE)", grokked)]
    return out + ["", f"- {paper.BROWN_LLID}."]


def section_finetune(root: Root) -> list[str]:
    """Result 5 (modular, one scale): fine-tuning d_int90 on a÷b against the pretraining step of θ0."""
    folders = sorted(root.folders("mini", "finetune_id/from_step*"), key=lambda p: int(p.name[9:]))
    sweeps = [(int(p.name[9:]), s) for p in folders if (s := root.sweep("mini", f"finetune_id/{p.name}"))]
    if not sweeps:
        return [f"Fine-tuning sweeps: {NOT_RUN}."]
    tags = scalars(root.root / "mini" / "finetune_id" / "pretrain_mul")
    grid = sorted({v for _, s in sweeps for v in s.values() if s.points.get(v)})

    def at(tag: str, step: int) -> str:
        steps, values = tags.get(tag, (np.array([]), np.array([])))
        index = np.nonzero(steps <= step)[0]
        return f"{values[index[-1]]:.3f}" if index.size else "—"
    rows = [[num(step), at("train/acc", step), at("val/acc", step),
             *(f"{m:.2f}" if (m := s.mean(d)) is not None else "—" for d in grid),
             d.cell() if (d := s.dim("individual")) else NOT_RUN] for step, s in sweeps]
    out = table(["pretraining step of θ0", "pretrain train acc (a·b)", "pretrain val acc (a·b)",
                 *(f"a÷b acc at d = {num(d)}" for d in grid), "d_int90 (a÷b, baseline 1.0)"], rows)
    dims = {f"step {step}": q_dim(s.dim("individual")) for step, s in sweeps}
    first = f"step {sweeps[0][0]}"
    later = [k for k in dims if k != first]
    out += ["", "| claim (paper) | modular arithmetic |", "|---|---|",
            f"| some pretrained snapshot needs a smaller d_int90 than {first} (Aghajanyan et al.) | "
            f"{verdict(lambda d: any(d[k] < d[first] for k in later), dims) if later else NOT_RUN} |",
            "| d_int90 never rises with a later snapshot (Aghajanyan et al.: it keeps falling) | "
            f"{verdict(lambda d: all(b <= a for a, b in zip(list(d.values()), list(d.values())[1:])), dims)} |"]
    return out


# ------------------------------------------------------------------------------------- commands, schedule, devices
SECTIONS = [
    ("1. Li et al. 2018 on MNIST: FC vs LeNet, shuffled pixels", "li_mnist", section_li, True, ("li_mnist.png",)),
    ("1b. Li et al. 2018: FC width × depth grid", "li_mnist_grid", section_grid, True, ("li_mnist_grid.png",)),
    ("2. Memorising shuffled labels (Li et al. 2018)", "memorisation", section_memorisation, True, ("memorisation.png",)),
    ("3. LoRA r90 vs subspace d90 (Hu et al. 2021)", "lora_vs_subspace", section_lora, True, ("lora_vs_subspace.png",)),
    ("4. Grokking and last-layer ID (Power et al. 2022, Brown et al. 2022)", "grokking_id", section_grokking, False,
     ("grokking_id.png", "grokking_id_scale.png")),
    ("5. Fine-tuning ID vs pretraining (Aghajanyan et al. 2021, offline analogue)", "finetune_id", section_finetune,
     False, ("finetune_id.png",)),
    ("6. Re-projecting a subspace-trained model (seed 000's question)", "reproject", section_reproject, True,
     ("reproject.png",)),
]


def schedule(cfg: Any, metrics: dict | None) -> str:
    """What a run did, read from its config and metrics.json: optimiser, lr, epochs/steps, batch, data."""
    if cfg is None:
        return "n/a"
    opt = str(cfg.optim.optimizer._target_).rsplit(".", 1)[-1]
    length = (f"{cfg.trainer.max_epochs} epochs" if int(cfg.trainer.get("max_epochs", -1) or -1) > 0
              else f"{cfg.trainer.max_steps:,} steps cap")
    done = f", {int(metrics['global_step']):,} steps" if metrics and "global_step" in metrics else ""
    size = train_size(cfg)
    data = str(cfg.data._target_).rsplit(".", 1)[-1] + (f" ({size:,} training examples)" if size else "")
    return f"{opt} {cfg.optim.optimizer.lr:g}, {length}{done}, batch {cfg.data.batch_size}, {data}"


def extra_overrides(plan: dict) -> list[str]:
    """The sweep's command-line overrides beyond the exp file (what a user must add to `+exp=…` to get it)."""
    neutral = ("+exp=", "sweep.dir=", "sweep.values=", "sweep.seeds=", "hydra/launcher=", "hydra.launcher.",
               "++callbacks.progress_bar=", "+trainer.enable_progress_bar=")
    return [a for a in plan.get("args", []) if not a.startswith(neutral)]


def meta(root: Root, name: str) -> list[str]:
    """Per scale: how it ran (record), each sweep's recipe and schedule, and the exact commands."""
    out = []
    for scale in ("full", "mini"):
        folder = root.root / scale / name
        record = read_json(folder / "repro.json")
        sweeps = sorted(p.parent for p in folder.rglob("plan.json") if "runs" not in p.relative_to(folder).parts) \
            if folder.is_dir() else []
        label = "full MNIST" if scale == "full" else \
            "modular arithmetic" if name in ("grokking_id", "finetune_id") else "mnist_mini"
        if record is None and not sweeps and not seed_dirs_any(folder):
            if (REPO / "repro" / scale / f"{name}.sh").is_file():
                out.append(f"- **{label}**: {NOT_RUN} (`bash repro/{scale}/{name}.sh`).")
            continue
        out.append(f"- **{label}**: `bash repro/{scale}/{name}.sh`; " + record_text(record) + code_text(folder))
        rows = []
        for sweep_dir in sweeps:
            sweep, plan = load(sweep_dir), read_json(sweep_dir / "plan.json") or {}
            exp = next((a.split("=", 1)[1] for a in plan.get("args", []) if a.startswith("+exp=")), "?")
            runs = (sweep.summary.get("runs") or {}) if sweep else {}
            point = sweep.run_dirs("point")[:1] if sweep else []
            base = sweep.run_dirs("baseline")[:1] if sweep else []
            spec = sweep.spec if sweep else plan.get("spec", {})
            rows.append([str(sweep_dir.relative_to(folder)), f"[`+exp={exp}`](../configs/exp/{exp}.yaml)"
                         + (f" {' '.join(extra_overrides(plan))}" if extra_overrides(plan) else ""),
                         f"{spec.get('param', '?')} ∈ {', '.join(num(v) for v in spec.get('values', []))}",
                         ", ".join(str(s) for s in spec.get("seeds", [])),
                         schedule(run_config(point[0]), read_json(point[0] / "metrics.json")) if point else "n/a",
                         schedule(run_config(base[0]), read_json(base[0] / "metrics.json")) if base else
                         f"given: {spec.get('baseline')}",
                         f"{runs.get('done', 0)} of {runs.get('planned', '?')}"])
        if rows:
            out += ["", *("  " + line for line in table(["sweep", "recipe", "grid", "seeds", "schedule (subspace/LoRA runs)",
                                                          "schedule (baseline)", "runs done"], rows)), ""]
        commands = (record or {}).get("commands") or [s["command"] for s in (record or {}).get("steps", [])]
        if commands:
            out += ["  <details><summary>exact commands</summary>", "", "  ```bash", *(f"  {c}" for c in commands),
                    "  ```", "", "  </details>", ""]
    return out


def seed_dirs_any(folder: Path) -> bool:
    """Whether a result folder holds train.py seed runs (grokking, first subspaces)."""
    return folder.is_dir() and any(folder.rglob("seed*/metrics.json"))


def record_text(record: dict | None) -> str:
    """Device, wall time, code version and status of the calls recorded in repro.json."""
    if record is None:
        return "no call record."
    calls = [*record.get("earlier_calls", []), record]
    wall = record.get("wall_total_s") or sum(c.get("wall_s") or 0 for c in calls)
    status = record.get("status") or ("done" if record.get("complete") else "partial")
    knobs = ", ".join(f"{k}={v}" for k, v in (record.get("knobs") or {}).items() if k not in ("ROOT", "IDLAB_DATA_DIR"))
    return (f"device {record.get('device')}; wall time {wall / 60:.1f} min over {len(calls)} call(s) "
            f"({record.get('started_iso', '?')}); last call {status}"
            + (f"; knobs {knobs}" if knobs else "") + (" — **CPU smoke scale, not a result**" if record.get("smoke")
                                                       else "") + ".")


def code_versions(folder: Path) -> dict[tuple[int, str], int]:
    """(results version, idlab sources hash) → number of runs: a sweep's runs from its summary.json (only the runs
    it aggregates, so runs superseded by a rerun under a newer results version no longer count), every other run
    from its metrics.json (a run that recorded no code version predates version 2; so does a summary without
    code versions, whose runs count from their metrics.json; runs set aside as `*.unfinished.*` do not count)."""
    def key(code: dict) -> tuple[int, str]:
        return int(code.get("results_version") or 1), str(code.get("source_hash") or "not recorded")
    versions: dict[tuple[int, str], int] = {}
    summaries = {p.parent: read_json(p) or {} for p in folder.rglob("summary.json")} if folder.is_dir() else {}
    sweeps = [sweep for sweep, summary in summaries.items() if "code_versions" in summary]
    for sweep in sweeps:
        for code in summaries[sweep]["code_versions"]:
            versions[key(code)] = versions.get(key(code), 0) + int(code.get("runs", 0))
    for path in folder.rglob("metrics.json") if folder.is_dir() else []:
        if any(path.is_relative_to(sweep) for sweep in sweeps) or ".unfinished." in str(path.relative_to(folder)):
            continue  # a sweep's run, counted above, or a run train_once set aside to train again
        code = (read_json(path) or {}).get("code") or {}
        versions[key(code)] = versions.get(key(code), 0) + 1
    return versions


def stale_runs(folder: Path) -> tuple[int, int] | None:
    """(runs made under an earlier results version than this checkout's, all runs), None when none is stale."""
    versions = code_versions(folder)
    old = sum(n for (v, _), n in versions.items() if v < RESULTS_VERSION)
    return (old, sum(versions.values())) if old else None


def code_text(folder: Path) -> str:
    """The code versions the result's runs recorded (idlab's sources hash and results version)."""
    versions = code_versions(folder)
    listed = "; ".join(f"results version {v}, idlab sources {h} ({n} runs)" for (v, h), n in sorted(versions.items()))
    return f" Code: {listed}." if listed else ""


def render(root: Path, figures: Path, doc: Path, previous: Path | None = None) -> str:
    """The whole of docs/results.md (`previous`: the superseded runs, for what the reruns moved)."""
    rel = Path(os.path.relpath(figures, doc.parent))
    runs = Root(root)
    out = ["# Reproducing the papers: results", "",
           "Generated by `python repro/results.py` from the run folders (`--unpack docs/runs` first unpacks the "
           "published ones); do not edit by hand. Each table sets the paper's number beside full MNIST against Li et "
           "al.'s global baseline 1.0 (target 0.9 accuracy), full MNIST against the directly trained network (their "
           "\"individual\" baseline) and the offline mnist_mini; a verdict is a claim evaluated on the measured numbers "
           "(\"undetermined\" where the grid or unfinished runs leave it open), and \"not yet run\" marks missing runs. "
           "How to run: [reproduce.md](reproduce.md).", ""]
    if previous is not None:
        out += section_moved(runs, Root(previous))
    for title, name, section, two_scales, figs in SECTIONS:
        out += [f"## {title}", ""]
        for scale in ("full", "mini"):
            stale = stale_runs(runs.root / scale / name)
            if stale:
                out += [f"> **Stale ({scale} scale): {stale[0]} of {stale[1]} runs predate results version "
                        f"{RESULTS_VERSION}**, so the numbers of that scale below describe earlier behaviour "
                        f"({RESULTS_CHANGES}); rerun `bash repro/{scale}/{name}.sh`.", ""]
        out += [*section(runs), ""]
        if name in paper.DIFFERENCES:
            out += [f"Setup: {paper.DIFFERENCES[name]}", ""]
        out += meta(runs, name)
        out += [f"![{f}]({rel / f})" for f in figs if (figures / f).is_file()] + [""]
    return "\n".join(out).rstrip() + "\n"


def sweep_names(root: Path, scale: str) -> list[str]:
    """Every sweep folder (one with plan.json) under root/scale, relative to it, run folders left out."""
    found = (plan.parent.relative_to(root / scale) for plan in (root / scale).glob("*/**/plan.json"))
    return sorted(str(rel) for rel in found if "runs" not in rel.parts)


def renamed(old: list[str], new: list[str]) -> dict[str, str]:
    """old sweep name → its name now: itself where it still exists, else the one new sweep that nothing old is
    called and whose name extends it (memorisation/real_labels → memorisation/real_labels_n1000)."""
    unclaimed = [n for n in new if n not in old]
    out = {}
    for name in old:
        if name in new:
            out[name] = name
        elif len(match := [n for n in unclaimed if n.startswith(f"{name}_")]) == 1:
            out[name] = match[0]
    return out


def section_moved(root: Root, previous: Root) -> list[str]:
    """What rerunning under the current RESULTS_VERSION moved: every sweep of the previous (superseded) runs beside
    the same sweep now, d_int90 against its own baseline and the baseline itself, read from both sets of runs."""
    rows = []
    for scale in ("full", "mini"):
        old_names = sweep_names(previous.root, scale)
        now_names = renamed(old_names, sweep_names(root.root, scale)) if (root.root / scale).is_dir() else {}
        for rel in old_names:
            old = previous.sweep(scale, rel)
            if old is None:
                continue
            now = now_names.get(rel)
            new = root.sweep(scale, now) if now else None
            before, after = old.dim("individual"), new.dim("individual") if new is not None else None
            fresh = new is not None and stale_runs(new.folder) is None
            if before is None or after is None or not fresh:
                moved = "not rerun yet" if not fresh else "no d_int90 to compare"
            elif before.value is None or after.value is None:
                moved = "unchanged (not reached)" if before.value == after.value else "moved"
            else:
                ratio = after.value / before.value
                moved = "unchanged" if ratio == 1 else f"×{ratio:.3g}"
            base = lambda sweep: "—" if sweep is None or sweep.baseline.get("value") is None else \
                f"{sweep.baseline['value']:.3f}"  # noqa: E731
            name = f"{scale}/{rel}" if now in (None, rel) else f"{scale}/{rel} (now {now})"
            rows.append([name, before.text() if before else "—", after.text() if after and fresh else "—",
                         base(old), base(new) if fresh else "—", moved])
    if not rows:
        return []
    return ["## What rerunning under the current code moved", "",
            f"The same sweeps before (runs from an earlier results version, kept in `docs/runs/v1/`) and after "
            f"results version {RESULTS_VERSION} ({RESULTS_CHANGES}); d_int90 against each sweep's own baseline.", "",
            *table(["sweep", "d_int90 before", "d_int90 now", "baseline before", "baseline now", "moved"], rows), ""]


def unpack(tarballs: Path, root: Path) -> list[Path]:
    """Extract tarballs/<scale>/*.tar.gz into root/<scale>/ (the layout repro/call.py packs)."""
    done = []
    for scale in ("full", "mini"):
        for tarball in sorted((tarballs / scale).glob("*.tar.gz")):
            (root / scale).mkdir(parents=True, exist_ok=True)
            with tarfile.open(tarball) as tar:
                tar.extractall(root / scale, filter="data")
            done.append(tarball)
    return done


def main(argv: list[str] | None = None) -> None:
    """Command-line entry: unpack (optionally), draw the figures, write the document atomically."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("outputs/repro"))
    parser.add_argument("--doc", type=Path, default=Path("docs/results.md"))
    parser.add_argument("--figures", type=Path, default=Path("docs/figures"))
    parser.add_argument("--unpack", type=Path, default=None, help="folder of <scale>/*.tar.gz to extract into --root")
    parser.add_argument("--previous", type=Path, default=None,
                        help="folder of <scale>/*.tar.gz of superseded runs (docs/runs/v1): what the reruns moved")
    args = parser.parse_args(argv)
    if args.unpack is not None:
        for tarball in unpack(args.unpack, args.root):
            print(f"unpacked {tarball}")
    previous = None
    if args.previous is not None:
        previous = args.root / "previous"
        for tarball in unpack(args.previous, previous):
            print(f"unpacked {tarball} (previous)")
    from repro.figures import draw_all

    for path in draw_all(Root(args.root), args.figures):
        print(path)
    args.doc.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.doc.with_name(f".{args.doc.name}.{os.getpid()}.tmp")
    tmp.write_text(render(args.root, args.figures, args.doc, previous))
    os.replace(tmp, args.doc)
    print(args.doc)


if __name__ == "__main__":
    main()
