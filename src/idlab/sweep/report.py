"""Sweep outputs: summary.json, results.csv, plot.png and a tensorboard figure."""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from idlab.sweep.plan import BASELINE, PlannedRun, run_name
from idlab.sweep.records import PLAN_FILE, RUNS_DIR, read_record, scan_runs, write_json_atomic
from idlab.sweep.results import RunResult, collect, summarize
from idlab.sweep.spec import SweepConfigError, SweepSpec

if TYPE_CHECKING:
    import matplotlib.pyplot as plt

SUMMARY_FILE = "summary.json"
RESULTS_FILE = "results.csv"
PLOT_FILE = "plot.png"
TENSORBOARD_DIR = "tensorboard"  # the sweep's tensorboard logdir: one folder per run (by run name) and REPORT_RUN
REPORT_RUN = "sweep"
CSV_COLUMNS = ("role", "value", "seed", "status", "metric", "diverged", "counted_as", "attempts", "key", "run_dir",
               "error")


def read_plan(sweep_dir: Path) -> dict[str, Any]:
    """plan.json of a sweep folder, with a clear error when the folder is not a sweep."""
    path = Path(sweep_dir) / PLAN_FILE
    if not path.is_file():
        raise SweepConfigError(f"{sweep_dir} is not a sweep folder (no {PLAN_FILE}); give the folder that "
                               "sweep.py created, the one holding plan.json and runs/ (sweep.dir)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise SweepConfigError(f"{path} is not valid JSON ({err}); rerun the sweep to rewrite it") from err


def summarize_plan(sweep_dir: Path, plan: dict[str, Any]) -> tuple[dict[str, Any], list[RunResult]]:
    """The summary of a plan (as in plan.json) against the run folders on disk; writes nothing."""
    spec = SweepSpec.from_dict(plan["spec"])
    runs = [PlannedRun.from_dict(r) for r in plan["runs"]]
    results = collect(runs, scan_runs(Path(sweep_dir) / RUNS_DIR), spec.metric)
    summary = summarize(spec, results, plan.get("search", {"kind": spec.search}))
    summary["sweep_dir"] = str(sweep_dir)
    return summary, results


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend, imported at first use: the sweep driver starts without it, and the fork
    launcher imports it while the jobs run (idlab.sweep.fork)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def report(sweep_dir: Path) -> dict[str, Any]:
    """Re-aggregate a sweep folder from plan.json and its run folders; writes every output."""
    sweep_dir = Path(sweep_dir)
    summary, results = summarize_plan(sweep_dir, read_plan(sweep_dir))
    write_json_atomic(sweep_dir / SUMMARY_FILE, summary)
    _write_csv(sweep_dir / RESULTS_FILE, results)
    figure = plot(summary, results)
    _save_png(figure, sweep_dir / PLOT_FILE)
    _write_tensorboard(sweep_dir / TENSORBOARD_DIR, summary, figure, results)
    pyplot().close(figure)
    return summary


def plot(summary: dict[str, Any], results: Sequence[RunResult]) -> plt.Figure:
    """Metric vs swept value (log x): seeds (diverged ones marked), mean ± std (hollow: seeds missing), baseline and
    threshold lines, d_int markers with their CI, seed count and number of distinct bootstrap resamples."""
    fig, ax = pyplot().subplots(figsize=(6.4, 4.2), dpi=120)
    done = [r for r in results if r.status == "done" and r.run.role != BASELINE]
    seeds = [(r.run.value, r.metric) for r in done if not r.diverged]
    if seeds:
        ax.scatter(*zip(*seeds), s=10, color="0.6", zorder=2, label="seeds")
    diverged = [(r.run.value, r.metric) for r in done if r.diverged]
    if diverged:
        ax.scatter(*zip(*diverged), s=28, marker="x", color="C3", zorder=4,
                   label="diverged (counted at last good value / chance)")
    points = summary["points"]
    if points:
        ax.errorbar([p["value"] for p in points], [p["mean"] for p in points], yerr=[p["std"] for p in points],
                    color="C0", capsize=3, zorder=3, label="seed mean ± std")
        complete = [p for p in points if p.get("complete", True)]
        partial = [p for p in points if not p.get("complete", True)]
        ax.scatter([p["value"] for p in complete], [p["mean"] for p in complete], color="C0", zorder=3)
        if partial:
            ax.scatter([p["value"] for p in partial], [p["mean"] for p in partial], facecolors="white",
                       edgecolors="C0", zorder=3, label="incomplete (seeds missing)")
    base = summary["baseline"]["value"]
    if base is not None:
        ax.axhline(base, color="k", linestyle="--", linewidth=1, label=f"baseline ({summary['baseline']['kind']})")
    notes = []
    for index, name in enumerate(k for k in summary if k.startswith("d_int")):
        block = summary[name]
        if block.get("target") is not None and block["fraction"] < 1:
            ax.axhline(block["target"], color="C3", linestyle=":", linewidth=1,
                       label=f"{block['fraction']:g} x baseline")
        if block.get("value") is not None:
            ax.axvline(block["value"], color=f"C{index + 1}", linewidth=1, alpha=0.8,
                       label=f"{name} = {block['value']:g}")
            low, high = block.get("ci95") or (None, None)
            if low is not None and high is not None and high > low:
                ax.axvspan(low, high, color=f"C{index + 1}", alpha=0.12,
                           label=f"{name} 95% CI ({block.get('seeds')} seeds, "
                                 f"{block.get('distinct_resamples')} distinct resamples)")
        elif block.get("status") == "undetermined":
            notes.append(f"{name} undetermined (seeds missing)")
        if block.get("ci_note") and not any("CI" in n for n in notes):
            notes.append(f"CI coarse: {block.get('seeds')} seeds, at most {block.get('max_distinct_resamples')} "
                         "distinct resamples")
    ax.set_xscale("log")
    ax.set_xlabel(summary["param"])
    ax.set_ylabel(summary["metric"])
    ax.set_title(f"{summary['metric']} vs {summary['param']}" + (f"\n{'; '.join(notes)}" if notes else ""),
                 fontsize=10 if notes else None)
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def _write_csv(path: Path, results: Sequence[RunResult]) -> None:
    """results.csv, one row per planned run, written atomically."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for r in results:
        writer.writerow([r.run.role, "" if r.run.value is None else r.run.value, r.run.seed, r.status,
                         "" if r.metric is None else r.metric, int(r.diverged), r.source or "", r.attempts, r.run.key,
                         "" if r.run_dir is None else str(r.run_dir), r.error or ""])
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(buffer.getvalue())
    os.replace(tmp, path)


def _save_png(figure: plt.Figure, path: Path) -> None:
    """Save the figure atomically."""
    tmp = path.with_name(f".{path.name}.tmp")
    figure.savefig(tmp, format="png")
    os.replace(tmp, path)


def _write_tensorboard(log_dir: Path, summary: dict[str, Any], figure: plt.Figure,
                       results: Sequence[RunResult]) -> None:
    """The sweep's own tensorboard run next to its runs' (<log_dir>/<run name>): the plot as a figure, seed-means
    as scalars over the swept value, the summary as text opening with the d_int line, and the HParams columns."""
    from torch.utils.tensorboard import SummaryWriter

    run_dir = log_dir / REPORT_RUN
    shutil.rmtree(run_dir, ignore_errors=True)  # derived output: one report, not a history of reports
    for stale in log_dir.glob("events.out.tfevents.*"):  # the report's events before runs shared this folder
        stale.unlink()
    writer = SummaryWriter(log_dir=str(run_dir))
    try:
        metric = summary["metric"]
        for point in summary["points"]:
            if float(point["value"]).is_integer():
                writer.add_scalar(f"sweep/{metric}", point["mean"], global_step=int(point["value"]))
        writer.add_text("sweep/summary", d_int_line(summary) + "\n\n```\n" + json.dumps(
            {k: v for k, v in summary.items() if k.startswith("d_int") or k in ("baseline", "runs")},
            indent=2, default=str) + "\n```")
        writer.add_figure(f"sweep/{metric}_vs_{summary['param']}", figure, global_step=0, close=False)
        experiment = _hparams_experiment(log_dir, summary, results)
        if experiment is not None:
            writer._get_file_writer().add_summary(experiment, 0)  # noqa: SLF001 - SummaryWriter's raw-summary path
    finally:
        writer.close()


def _hparams_experiment(log_dir: Path, summary: dict[str, Any], results: Sequence[RunResult]) -> Any:
    """The HParams tab's columns for the sweep: every hyperparameter its runs logged, marked where its values differ
    (tensorboard lists those first and ticks the first five), then the runs' final metrics, the sweep's metric
    first. None before a run has logged hyperparameters (tensorboard then builds the columns from the runs, every
    curve a metric column)."""
    from tensorboard.plugins.hparams import api_pb2

    from idlab.training.hparams import final_metrics, hparams_summary, read_hparams

    values: dict[str, list[Any]] = {}
    metrics: set[str] = set()
    for r in results:
        hparams = read_hparams(log_dir / run_name(r.run, summary["param"])) if r.status == "done" else {}
        record = read_record(r.run_dir) if hparams else None
        for key, value in hparams.items():
            values.setdefault(key, []).append(value)
        metrics |= set(final_metrics(record.metrics)) if record is not None else set()
    if not values:
        return None
    infos = []
    for name, seen in values.items():
        info = api_pb2.HParamInfo(name=name, differs=len(set(map(repr, seen))) > 1)
        _domain(seen, info)
        infos.append(info)
    ordered = [summary["metric"]] * (summary["metric"] in metrics) + sorted(metrics - {summary["metric"]})
    return hparams_summary(experiment=api_pb2.Experiment(
        hparam_infos=infos, metric_infos=[api_pb2.MetricInfo(name=api_pb2.MetricName(tag=m)) for m in ordered]))


def _domain(values: list[Any], info: Any) -> None:
    """Set the HParamInfo's type and domain from the values seen: the set of strings or booleans, the interval
    of numbers (tensorboard's filters need one)."""
    from tensorboard.plugins.hparams import summary_v2 as hp

    if all(isinstance(v, (bool, str)) for v in values) and len({type(v) for v in values}) == 1:
        hp.Discrete(sorted(set(values))).update_hparam_info(info)
    elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        hp.RealInterval(float(min(values)), float(max(values))).update_hparam_info(info)


def d_int_line(summary: dict[str, Any]) -> str:
    """Every d_int of the summary with its 95% CI on one line: `d_int90 = 300 (95% CI 100–500) · d_int100 = …`."""
    def number(x: Any, missing: str = "n/a") -> str:
        return missing if x is None else f"{x:.4g}"

    parts = []
    for name in (k for k in summary if k.startswith("d_int")):
        block = summary[name]
        low, high = (block.get("ci95") or [None, None])[:2]
        value = number(block.get("value"), "not reached" if block.get("target") is not None else "n/a")
        ci = f" (95% CI {number(low)}–{number(high, 'not reached')})" if low is not None else ""
        parts.append(f"{name} = {value}{ci}")
    return f"**{' · '.join(parts)}** ({summary['metric']} vs {summary['param']})" if parts else "no d_int yet"
