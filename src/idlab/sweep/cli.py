"""Command line of sweep.py: run/resume a sweep, plan it (--dry-run), or re-aggregate a folder (--report)."""
from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any, Sequence

from idlab.sweep.spec import SweepConfigError

USAGE = """\
usage: python sweep.py +exp=NAME [sweep.KEY=VALUE ...] [hydra/launcher=joblib|fork|submitit_local|slurm ...] [overrides]
       python sweep.py --dry-run +exp=NAME ...   list the runs and which are already done, launch nothing
       python sweep.py --report DIR              re-aggregate an existing sweep folder
The sweep block (param, values, seeds, metric, baseline, threshold, overrides, search, ...) is described in
docs/sweep.md; finished runs are matched by their resolved config and skipped, failed runs are rerun."""


def main(argv: Sequence[str], config_dir: Path) -> int:
    """Entry point; returns the process exit status (2 for bad input, 1 when runs failed)."""
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s] %(message)s")
    args = list(argv)
    if not args or args[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if args else 2
    try:
        if "--report" in args:
            summary = _report(args)
        else:
            from idlab.sweep.driver import run_sweep

            dry_run = "--dry-run" in args
            summary = run_sweep(config_dir, [a for a in args if a != "--dry-run"], dry_run=dry_run)
    except SweepConfigError as err:
        print(f"sweep.py: error: {err}", file=sys.stderr)
        return 2
    print(describe(summary))
    return 1 if summary["runs"]["failed"] else 0


def describe(summary: dict[str, Any]) -> str:
    """A short human-readable account of a summary: diverged and missing seeds, undetermined d_int, CI sizes."""
    base = summary["baseline"]
    lines = [f"sweep folder: {summary.get('sweep_dir')}",
             f"runs: {summary['runs']}",
             f"baseline ({base['kind']}): {_num(base['value'])}" + (f" ± {_num(base['std'])} over {base['n']} seeds"
                                                                    if base["kind"] == "full" else "")
             + _flags(base),
             f"{summary['param']:>12}  {'n':>2}  {summary['metric']} mean ± std"]
    lines += [f"{p['value']:>12g}  {p['n']:>2}  {p['mean']:.4f} ± {p['std']:.4f}{_flags(p)}" for p in summary["points"]]
    for gap in summary.get("incomplete", []):
        if not any(p["value"] == gap["value"] for p in summary["points"]):
            lines.append(f"{gap['value']:>12g}   0  no result yet (seeds {gap['missing']} missing)")
    for name in (k for k in summary if k.startswith("d_int")):
        block = summary[name]
        if block.get("status") == "undetermined":
            lines.append(f"{name}: UNDETERMINED — {block['note']}")
            continue
        ci = block.get("ci95") or [None, None]
        size = f"; {block['seeds']} seeds, {block['distinct_resamples']} distinct resamples" if "seeds" in block else ""
        lines.append(f"{name}: {_num(block['value'])}  (95% paired bootstrap CI {_num(ci[0])} .. "
                     f"{_num(ci[1]) if ci[1] is not None else 'not reached'}{size}) — {block['note']}")
        if block.get("ci_note"):
            lines.append(f"  note: {block['ci_note']}")
    for run in summary.get("diverged", []):
        where = "baseline" if run["role"] == "baseline" else f"value={run['value']}"
        lines.append(f"DIVERGED {where} seed={run['seed']} at step {_num(run['step'])}: counted as "
                     f"{_num(run['counted'])} ({run['counted_as']})  [{run['run_dir']}]")
    for failed in summary["failed"]:
        lines.append(f"FAILED {failed['role']} value={failed['value']} seed={failed['seed']} "
                     f"({failed['attempts']} attempt(s)): {failed['error']}  [{failed['run_dir']}]")
    lines += [f"warning: {w}" for w in summary.get("warnings", [])]
    return "\n".join(lines)


def _flags(entry: dict[str, Any]) -> str:
    """'  [diverged seeds [1]; missing seeds [2]]' for a point or the baseline ('' when neither)."""
    parts = [f"{label} seeds {entry[key]}" for key, label in (("diverged", "diverged"), ("missing", "missing"))
             if entry.get(key)]
    return f"  [{'; '.join(parts)}]" if parts else ""


def _report(args: list[str]) -> dict[str, Any]:
    """--report DIR."""
    from idlab.sweep.report import report

    index = args.index("--report")
    if index + 1 >= len(args) or len(args) != 2:
        raise SweepConfigError("--report takes exactly one sweep folder: python sweep.py --report DIR")
    summary = report(Path(args[index + 1]))
    return summary


def _num(x: float | None) -> str:
    """Compact number or 'n/a'."""
    return "n/a" if x is None else f"{x:.4g}"
