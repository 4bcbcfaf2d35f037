"""docs/results.md: per result, the paper's number, ours (from the run folders), command, data, seeds, device, wall."""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Callable

import numpy as np

from repro import paper
from repro.figs_mnist import first_accuracy, grid_points, memorisation_scales, training_labels
from repro.figs_modular import finetune_sweeps, grok_settings, grok_times
from repro.load import Sweep, curves, llid, load_sweep, read_json, seed_dirs
from repro.registry import GPU_MINUTES, ISSUE_ITEM, build
from repro.steps import Settings

NOT_RUN = "not yet run"


def num(x: float | None, digits: int = 3) -> str:
    """1,400 / 0.873 / n/a."""
    if x is None:
        return "n/a"
    return f"{x:,.0f}" if float(x).is_integer() or abs(x) >= 100 else f"{x:.{digits}g}"


def dim_cell(sweep: Sweep | None, name: str = "d_int90") -> str:
    """'750 (95 % CI 500–1,000)', '> 4,000 (not reached: …)', or 'not yet run'."""
    if sweep is None:
        return NOT_RUN
    block, runs = sweep.dim(name), sweep.summary.get("runs", {})
    partial = "" if runs.get("done") == runs.get("planned") else \
        f"; {runs.get('done', 0)} of {runs.get('planned', '?')} runs"
    if block.get("value") is None:
        values = sweep.curve()[0]
        return (f"> {num(values.max())} (not reached{partial})" if values.size else f"no finished runs{partial}")
    low, high = block.get("ci95") or (None, None)
    ci = f"95 % CI {num(low)}–{num(high) if high is not None else 'not reached'}"
    return f"**{num(block['value'])}** ({ci}{partial})"


def base_cell(sweep: Sweep | None) -> str:
    """Baseline value ± std over seeds."""
    if sweep is None or sweep.baseline is None:
        return "n/a"
    base = sweep.summary["baseline"]
    return f"{base['value']:.3f}" + (f" ± {base['std']:.3f}" if base.get("std") else "") + f" ({base['kind']})"


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b when both are known."""
    return a / b if a is not None and b not in (None, 0) else None


def verdict(condition: bool | None, text: str) -> str:
    """'yes — text' / 'no — text' / 'undecided'."""
    return "undecided (missing numbers) — " + text if condition is None else ("yes — " if condition else "no — ") + text


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table."""
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def dval(sweep: Sweep | None) -> float | None:
    """The d_int90 value of a sweep, None if missing or not reached."""
    return None if sweep is None else sweep.dim().get("value")


def section_li(root: Path) -> list[str]:
    """Result 1: FC vs LeNet, shuffled pixels, and the width/depth grid."""
    s = {k: load_sweep(root / "li_mnist" / k) for k in paper.LI_MNIST}
    rows = [[f"{label} d_int90", num(paper.LI_MNIST[k]), dim_cell(s[k]), base_cell(s[k])]
            for k, label in (("fc", "FC 784-200-200-10"), ("lenet", "LeNet"),
                             ("fc_shuffled_pixels", "FC, shuffled pixels"),
                             ("lenet_shuffled_pixels", "LeNet, shuffled pixels"))]
    lenet_ratio = ratio(dval(s["lenet_shuffled_pixels"]), dval(s["lenet"]))
    fc_ratio = ratio(dval(s["fc_shuffled_pixels"]), dval(s["fc"]))
    rows += [["LeNet shuffled / plain", "4.8×", num(lenet_ratio) + "×" if lenet_ratio else "n/a", ""],
             ["FC shuffled / plain", "1.0×", num(fc_ratio) + "×" if fc_ratio else "n/a", ""]]
    lines = table(["quantity", "paper", "ours", "baseline test acc"], rows)
    fc, lenet = dval(s["fc"]), dval(s["lenet"])
    lines += ["", "- LeNet below FC: " + verdict(None if fc is None or lenet is None else lenet < fc,
                                                  "paper 290 < 750"),
              "- shuffling pixels raises LeNet's d_int90 at least 2×: " +
              verdict(None if lenet_ratio is None else lenet_ratio >= 2, "paper 4.8×"),
              "- FC's d_int90 moves by less than 1.5× with shuffled pixels: " +
              verdict(None if fc_ratio is None else 1 / 1.5 <= fc_ratio <= 1.5, "paper 1.0×")]
    return lines


def section_grid(root: Path) -> list[str]:
    """Result 1: d_int90 over the FC width × depth grid."""
    points = grid_points(root)
    if not points:
        return [f"FC width × depth grid: {NOT_RUN}."]
    rows = [[label, num(total), dim_cell(sweep), base_cell(sweep)] for label, total, sweep in points]
    lines = table(["FC width×depth", "D", "d_int90", "baseline test acc"], rows)
    dims = [dval(sw) for _, _, sw in points]
    totals = [t for _, t, _ in points]
    d_ratio = ratio(max(dims), min(dims)) if dims and None not in dims else None
    lines += ["", f"- D varies {num(ratio(max(totals), min(totals)))}× (paper 24.1×); d_int90 varies "
              f"{num(d_ratio) + '×' if d_ratio else 'n/a (some not reached)'} (paper 1.33×)."]
    return lines


def section_memorisation(root: Path) -> list[str]:
    """Result 2: real vs shuffled labels at each label count."""
    scales = memorisation_scales(root) or [("", None, None)]
    rows, ratios = [], []
    for _, real, shuf in scales:
        labels = training_labels(shuf or real)
        at = f" ({num(labels)} labels)" if labels else ""
        r = ratio(dval(shuf), dval(real))
        per_label = ratio(dval(shuf), labels)
        ratios.append((labels, r))
        rows += [[f"real labels{at}, d_int90 of train acc", "— (750 on test acc)", dim_cell(real), base_cell(real)],
                 [f"100 % shuffled labels{at}, d_int90 of train acc",
                  f"190,000 ({paper.LI_SHUFFLED_LABELS['labels']:,} labels)", dim_cell(shuf), base_cell(shuf)],
                 [f"floats per memorised label{at}", "3.8", num(per_label) if per_label else "n/a", ""],
                 [f"shuffled / real{at}", "≈250×", num(r) + "×" if r else "n/a", ""]]
    known = [(n, r) for n, r in ratios if n is not None and r is not None]
    largest = max(known)[1] if known else None
    grows = None if len(known) < 2 else all(b[1] > a[1] for a, b in zip(sorted(known), sorted(known)[1:]))
    return table(["quantity", "paper", "ours", "baseline train acc"], rows) + [
        "", "- shuffled labels need a far larger d (≥ 5×) at the largest label count: " +
        verdict(None if largest is None else largest >= 5, "paper ≈250× at 50,000 labels"),
        "- the gap grows with the number of labels: " + verdict(grows, "memorising costs d per label, learning "
                                                                       "real labels does not")]


def section_lora(root: Path) -> list[str]:
    """Result 3: LoRA rank sweep against subspace d on the trainable-parameter axis."""
    lora, sub = load_sweep(root / "lora_vs_subspace" / "lora"), load_sweep(root / "li_mnist" / "lenet")
    if lora is None:
        return [f"LoRA rank sweep: {NOT_RUN}."]
    params = lora.per_value("params/trainable")
    values, means, stds = lora.curve()
    accs = ", ".join(f"r={v:g}: {m:.3f}" for v, m in zip(values, means))
    r90 = dval(lora)
    drops = [b - a for a, b in zip(means[1:], means[:-1])]
    monotone = None if len(means) < 2 else all(d <= max(s, 0.005) for d, s in zip(drops, stds[1:]))
    rows = [["LoRA r90", "— (r = 1 suffices for Wq,Wv on GPT-3)", dim_cell(lora),
             f"{num(params.get(r90))} trainable" if r90 is not None else ""],
            ["subspace d_int90 (= trainable)", "—", dim_cell(sub), f"{num(dval(sub))} trainable" if dval(sub) else ""],
            ["LoRA test acc by rank", "rises with r, saturates", accs, base_cell(lora)]]
    return table(["quantity", "paper", "ours", "trainable parameters"], rows) + [
        "", "- accuracy non-decreasing in r (within one seed std): " + verdict(monotone, "Hu et al. Table 6"),
        "- trainable parameters at r90 ÷ subspace d_int90: " +
        (num(ratio(params.get(r90), dval(sub))) + "×" if r90 is not None and dval(sub) else "n/a")]


def section_grokking(root: Path) -> list[str]:
    """Result 4: steps to 99 % train/val accuracy and the last-layer ID around the jump, per setting."""
    settings = grok_settings(root)
    if not settings:
        return [f"Grokking runs: {NOT_RUN}."]
    rows = []
    for setting in settings:
        notes = paper.GROK_NOTES.get(setting.name, (None, None))
        times = [grok_times(d) for d in seed_dirs(setting)]
        val_llid = [llid(d, "val") for d in seed_dirs(setting)]
        ids = "; ".join(f"{v[0]:.1f} → {v[-1]:.1f}" for _, v in val_llid if v.size)
        drops = "; ".join(steepest_drop(d) for d in seed_dirs(setting))
        noted = "—" if notes == (None, None) else f"{num(notes[0])} / {num(notes[1]) if notes[1] else 'not by 24k'}"
        rows.append([setting.name, noted,
                     ", ".join(num(t["train/acc"]) if t["train/acc"] is not None else "—" for t in times),
                     ", ".join(num(t["val/acc"]) if t["val/acc"] is not None else f"— (≤{num(t['last_step'])})"
                               for t in times), ids or "n/a", drops or "n/a"])
    return table(["setting", "notes: train / val ≥ 99 % (1 seed)", "ours: train ≥ 99 % (per seed)",
                  "ours: val ≥ 99 %", "val LLID start → end", "largest LLID drop at / val acc ≥ 0.5 at"], rows) + [
        "", f"- Brown et al.: {paper.BROWN_LLID}."]


def steepest_drop(seed_dir: Path) -> str:
    """'step A / step B': where the val LLID falls most between measurements, and where val acc first reaches 0.5."""
    steps, values = llid(seed_dir, "val")
    tags = curves(seed_dir)
    vs, va = tags.get("val/acc", (np.array([]), np.array([])))
    hits = np.nonzero(va >= 0.5)[0]
    jump = num(int(vs[hits[0]])) if hits.size else "—"
    if steps.size < 2:
        return f"— / {jump}"
    k = int(np.argmin(np.diff(values)))
    return f"{num(int(steps[k]))}–{num(int(steps[k + 1]))} / {jump}"


def section_finetune(root: Path) -> list[str]:
    """Result 5: held-out accuracy per d and d_int90 of fine-tuning on a÷b against the pretraining step of θ0."""
    sweeps = finetune_sweeps(root)
    if not sweeps:
        return [f"Fine-tuning sweeps: {NOT_RUN}."]
    pretrain = next(iter(sorted((root / "finetune_id").glob("pretrain_*"))), None)
    tags = curves(pretrain) if pretrain else {}
    grid = sorted({float(v) for _, sw in sweeps for v in sw.curve()[0]})
    rows = []
    for step, sweep in sweeps:
        values, means, stds = sweep.curve()
        acc = {float(v): f"{m:.2f} ± {sd:.2f}" for v, m, sd in zip(values, means, stds)}
        rows.append([num(step), at_step(tags, "train/acc", step), at_step(tags, "val/acc", step),
                     *(acc.get(d, "—") for d in grid), dim_cell(sweep)])
    first, later = dval(sweeps[0][1]), [dval(sw) for _, sw in sweeps[1:]]
    bound = math.inf if first is None else first  # not reached from step 0: beyond the grid
    lower = None if all(d is None for d in later) else any(d is not None and d < bound for d in later)
    known = [d for d in [first, *later] if d is not None]
    falls = None if len(known) < 2 else all(b <= a for a, b in zip(known, known[1:]))
    header = ["pretraining step of θ0", "pretrain train acc (a·b)", "pretrain val acc (a·b)",
              *(f"a÷b acc, d = {num(d)}" for d in grid), "fine-tune d_int90 (a÷b)"]
    return table(header, rows) + [
        "", f"- a pretrained snapshot needs a smaller d_int90 than step {num(sweeps[0][0])}: " +
        verdict(lower, "Aghajanyan et al.: pretraining lowers the fine-tuning ID"),
        "- d_int90 never rises with a later snapshot (among reached values): " +
        verdict(falls, "Aghajanyan et al.: ID keeps falling with pretraining updates")]


def at_step(tags: dict, tag: str, step: int) -> str:
    """The logged value of `tag` at the last logging step ≤ `step` ('—' before any)."""
    steps, values = tags.get(tag, (np.array([]), np.array([])))
    index = np.nonzero(steps <= step)[0]
    return f"{values[index[-1]]:.3f}" if index.size else "—"


def section_reproject(root: Path) -> list[str]:
    """Result 6: re-projection from a subspace-trained θ_A."""
    scratch = load_sweep(root / "li_mnist" / "lenet")
    folders = sorted((root / "reproject").glob("from_d*"), key=lambda d: int(d.name[6:])) \
        if (root / "reproject").is_dir() else []
    if not folders:
        return [f"Re-projection sweeps: {NOT_RUN}."]
    rows = [["0 (from init)", "—", dim_cell(scratch), dim_cell(scratch, "d_int100"), "—"]]
    for folder in folders:
        d_a, sweep = int(folder.name[6:]), load_sweep(folder)
        d_b = dval(sweep)
        rows.append([num(d_a), num(first_accuracy(root / "reproject" / f"first_d{d_a}")), dim_cell(sweep),
                     dim_cell(sweep, "d_int100"), num(d_a + d_b) if d_b is not None else "n/a"])
    return table(["first subspace d_A", "θ_A test acc", "fresh-subspace d_int90 (d_B)", "d_int100", "d_A + d_B90"],
                 rows)


SECTIONS: list[tuple[str, list[tuple[str, str, Callable[[Path], list[str]]]], list[str]]] = [
    ("1. Li et al. 2018 on MNIST",
     [("", "li_mnist", section_li), ("FC width × depth grid", "li_mnist_grid", section_grid)],
     ["li_mnist_fc_vs_lenet.png", "li_mnist_shuffled_pixels.png", "li_mnist_grid.png"]),
    ("2. Memorising shuffled labels (Li et al.)", [("", "memorisation", section_memorisation)], ["memorisation.png"]),
    ("3. LoRA r90 vs subspace d90 (Hu et al. 2021)", [("", "lora_vs_subspace", section_lora)],
     ["lora_vs_subspace.png"]),
    ("4. Grokking and last-layer ID (Power et al. 2022, Brown et al. 2022)", [("", "grokking_id", section_grokking)],
     ["grokking_id.png"]),
    ("5. Fine-tuning ID vs pretraining (Aghajanyan et al. 2021, offline analogue)",
     [("", "finetune_id", section_finetune)], ["finetune_id.png"]),
    ("6. Re-projecting a subspace-trained model (seed 000's question)", [("", "reproject", section_reproject)],
     ["reproject.png"]),
]


def meta(root: Path, name: str) -> list[str]:
    """Command, scale, seeds, device, wall time and status of one reproduction (from repro.json, else the plan)."""
    record = read_json(root / name / "repro.json")
    plan = build(name, Settings())
    lines = [f"- **Command**: `bash repro/{name}.sh` (issue item {ISSUE_ITEM[name]}; planned ≈{GPU_MINUTES[name]} GPU "
             f"min on one H100); the individual commands are in `{name}/repro.json` and `python repro/run.py {name} "
             "--dry-run`.",
             f"- **Data, scale, seeds**: {record['scale'] if record else plan.scale}."]
    commands = [step["command"] for step in record["steps"]] if record else [st.shell() for st in plan.steps()]
    details = ["", "<details><summary>exact commands</summary>", "", "```bash", *commands, "```", "", "</details>"]
    if record is None:
        return lines + [f"- **Device, wall time**: {NOT_RUN}.", f"- **Comment**: {paper.CAVEATS[name]}", *details]
    steps = record.get("steps", [])
    done = sum(s.get("status") in ("done", "kept") for s in steps)
    together = ", ".join(record.get("run_together_with") or []) or "nothing else"
    smoke = " — **CPU smoke scale (2 batches per run), not a result**" if record.get("smoke") else ""
    calls, wall = record.get("earlier_calls") or [], record.get("wall_s", 0) / 60
    wall_text = f"{record['wall_total_s'] / 60:.1f} min over {len(calls) + 1} calls (the last {wall:.1f} min; " \
        if calls else f"{wall:.1f} min ("
    lines += [f"- **Device**: {record.get('device')}{smoke}; **wall time** {wall_text}"
              f"concurrently with {together}); {done} of {len(steps)} steps finished"
              + ("" if record.get("complete") else " — partial result") + f"; code {record.get('git')}.",
              f"- **Comment**: {paper.CAVEATS[name]}"]
    return lines + details


def render(root: Path, figures: Path, doc: Path) -> str:
    """The whole of docs/results.md."""
    rel = Path(os.path.relpath(figures, doc.parent))
    out = ["# Reproducing the papers: results", "",
           "Generated by `python repro/figures.py` from the run folders under `outputs/repro/` (unpack the tarballs "
           "there first); do not edit by hand: the comments live in `repro/paper.py`. \"not yet run\" marks results "
           "without a run folder. How to run: "
           "[reproduce.md](reproduce.md) and [repro/README.md](../repro/README.md).", ""]
    for title, parts, figs in SECTIONS:
        out += [f"## {title}", ""]
        for subtitle, name, fn in parts:
            out += ([f"### {subtitle}", ""] if subtitle else []) + fn(root) + [""] + meta(root, name) + [""]
        out += [f"![{f}]({rel / f})" for f in figs if (figures / f).is_file()] + [""]
    sweeps = sorted((figures / "sweeps").glob("*.png")) if (figures / "sweeps").is_dir() else []
    if sweeps:
        out += ["## Every sweep", "", "Metric against the swept value, seeds, mean ± std, baseline (dashed), "
                "threshold (dotted) and d_int90 (vertical):", ""]
        out += [f"- [{p.stem}]({rel / 'sweeps' / p.name})" for p in sweeps] + [""]
    return "\n".join(out).rstrip() + "\n"
