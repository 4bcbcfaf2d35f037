"""Lightning callback: intrinsic dimension of chosen layers' activations on a fixed probe set during training."""
from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn

from idlab.adapt.base import base_model
from idlab.id.activations import REDUCTIONS, PassRecording, collect_activations, match_layers, matches, module_names
from idlab.id.estimators import Estimator, make_estimator
from idlab.id.report import Measurement, append_csv, drop_rows_after, metrics_dict, profile_figure, scale_figure
from idlab.id.twonn import distinct_search
from idlab.models.base import evaluation

log = logging.getLogger(__name__)
SPLITS = ("train", "val", "test")


class ActivationID(pl.Callback):
    """Every n steps or epochs (step 0 included) and at the end, estimate each tracked layer's ID on probe splits."""

    def __init__(
        self,
        layers: Sequence[str] | None = None,
        splits: Sequence[str] = ("val",),
        num_samples: int | None = 2000,
        seed: int = 0,
        every_n_steps: int | None = None,
        every_n_epochs: int | None = 1,
        at_train_end: bool = True,
        estimators: Sequence[str | Mapping[str, Any]] = ("twonn",),
        sequence_reduction: str = "last",
        batch_size: int = 1024,
        store_on_cpu: bool = False,
        csv_path: str | None = None,
        figure: bool = True,
        figure_every: int = 10,
        background: bool | str = False,
        reuse_validation: bool = True,
    ) -> None:
        """Validate every option now, so a bad one fails before training starts.

        background: the probe forward runs in line (it needs this step's weights); the searches, estimators and
        figures then run in a worker thread, on their own CUDA stream, while training goes on; the rows are logged
        and written when they are done (at the latest before the next measurement, a checkpoint or the end of
        training). `auto`: on CUDA; false (default): everything in line. On an H200 the background saved little
        (ResNet-18 paired epochs: 9.6 % against 10.7 % in line; docs/benchmarks.md), so it is opt-in.

        reuse_validation: the val probe's activations are recorded during Lightning's validation pass that ran on
        the weights about to be measured (the epoch-end validation before an every-n-epochs measurement), so
        that measurement needs no probe forward of its own. It applies where that pass is the probe's forward:
        idlab's Classifier, one process, 32/64-bit precision, validation over the whole split in order. The
        recorded batches are checked against the probe's inputs; anything else runs the probe forward as before.
        """
        check_options(splits, num_samples, every_n_steps, every_n_epochs, sequence_reduction, batch_size)
        if figure_every < 1:
            raise ValueError(f"callbacks.activation_id.figure_every={figure_every} must be >= 1 (1: every measurement)")
        if background not in (True, False, "auto"):
            raise ValueError(f"callbacks.activation_id.background={background!r}: use true, false or auto "
                             "(auto: in the background on CUDA)")
        self.patterns = list(layers) if layers is not None else None
        self.splits, self.num_samples, self.seed = list(splits), num_samples, seed
        self.every_n_steps, self.every_n_epochs, self.at_train_end = every_n_steps, every_n_epochs, at_train_end
        self.estimators: list[Estimator] = [make_estimator(spec) for spec in estimators]
        tags = [e.tag for e in self.estimators]
        if len(set(tags)) != len(tags):
            raise ValueError(f"estimator tags {tags} repeat; give repeated estimators distinct `tag:` values")
        if any("/" in tag for tag in tags):
            raise ValueError(f"estimator tags {tags}: a tag may not contain '/' (it separates a tag from its scale)")
        if num_samples is not None:
            check_probe_size(self.estimators, num_samples, f"num_samples={num_samples}")
        self.prefixes = prefixes_for(self.estimators)
        self.applies: dict[str, list[str]] = {}
        self.sequence_reduction, self.batch_size = sequence_reduction, batch_size
        self.store = torch.device("cpu") if store_on_cpu else None
        self.csv_path, self.figure, self.figure_every = csv_path, figure, figure_every
        self.background, self.reuse_validation = background, reuse_validation
        self.capture: PassRecording | None = None
        self.captured: tuple[int, dict[str, torch.Tensor]] | None = None
        self.val_index: torch.Tensor | None = None
        self.val_size = 0
        self.reused = 0  # measurements whose val probe came from the validation pass
        self.worker: ThreadPoolExecutor | None = None
        self.stream: torch.cuda.Stream | None = None
        self.pending: tuple[pl.Trainer, Future] | None = None
        self.measured = 0
        self.unplotted: tuple[int, list[Measurement]] | None = None
        self.layers: list[str] = []
        self.llid_layer: str | None = None
        self.probes: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.last_step = -1
        self.resumed = False

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Resolve layers and draw the probe sets (on every rank, so every rank fails alike on bad input)."""
        if stage != "fit":
            return
        model = base_model(forward_module(pl_module))
        patterns = self.patterns if self.patterns is not None else getattr(model, "id_layers", ())
        chosen = set(match_layers(model, patterns))
        # LLID is the ID of the representation the classifier reads: the model's llid_layer, always tracked.
        self.llid_layer = getattr(model, "llid_layer", None)
        self.layers = [n for n in module_names(model) if n in chosen or n == self.llid_layer]
        drawn = {split: draw_probe(trainer, split, self.num_samples, self.seed) for split in self.splits}
        self.probes = {split: (x, y) for split, (x, y, _, _) in drawn.items()}
        if "val" in drawn:  # which rows of the validation pass are the val probe's (see PassRecording)
            self.val_index, self.val_size = drawn["val"][2:]
        x = next(iter(self.probes.values()))[0][:2]
        with evaluation(pl_module):
            features = collect_activations(forward_module(pl_module), model, self.layers, x, 2, device_of(pl_module),
                                           self.sequence_reduction, torch.device("cpu"))
        self.layers = list(features)
        self.llid_layer = self.llid_layer or self.layers[-1]
        self.applies = estimator_layers(self.estimators, self.layers)
        for split, (x, _) in self.probes.items():
            check_probe_size(self.estimators, len(x), f"the {split} probe ({len(x)} points)")
        sizes = {name: f.shape[1] for name, f in features.items()}
        log.info("ActivationID tracks %s (features per point; LLID = %s); probe sizes %s", sizes, self.llid_layer,
                 {s: len(p[0]) for s, p in self.probes.items()})

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        """Measure at every n-th optimiser step (before that step's update)."""
        if self.every_n_steps and trainer.global_step % self.every_n_steps == 0:
            self.measure(trainer, pl_module)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Measure at the start of every n-th epoch (epoch 0 = the initial network)."""
        if self.every_n_epochs and trainer.current_epoch % self.every_n_epochs == 0:
            self.measure(trainer, pl_module)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        """Report a background measurement that has finished (no waiting)."""
        self.settle(wait=False)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Report a background measurement that has finished (no waiting)."""
        self.settle(wait=False)

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Record the tracked layers during this validation pass if a measurement of these weights comes next."""
        self.captured = None
        if self.recording_applies(trainer, pl_module):
            self.capture = PassRecording(base_model(forward_module(pl_module)), self.layers, self.probes["val"][0],
                                         self.val_index, self.val_size, self.sequence_reduction, self.store)

    def on_validation_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        """Check the recorded batch against the probe's inputs."""
        if self.capture is not None:
            self.capture.batch_end(batch[0] if isinstance(batch, (tuple, list)) and batch else batch)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Keep the recorded activations for the measurement at this step; if the pass was not the probe's forward,
        say why once and run the probe's own forward from now on."""
        if self.capture is None:
            return
        capture, self.capture = self.capture, None
        features = capture.close()
        if features is None:
            log.info("ActivationID: the validation pass is not the val probe's forward (%s); the probe runs its "
                     "own forward", capture.why)
            self.reuse_validation = False
        else:
            self.captured = (trainer.global_step, features)

    def recording_applies(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> bool:
        """Whether this validation pass can serve as the val probe's forward of the next measurement: the epoch
        cadence measures next (or the run ends after this epoch), in one process, at full precision, with a module
        whose validation_step runs the measured network once on each batch's inputs as given (idlab's Classifier)."""
        if not (self.reuse_validation and "val" in self.probes and trainer.is_global_zero and self.every_n_epochs
                and trainer.state.fn == "fit" and not trainer.sanity_checking and trainer.world_size == 1
                and trainer.limit_val_batches == 1.0
                and str(trainer.precision) in ("32-true", "32", "64-true", "64")
                and getattr(pl_module, "validation_runs_net", False)):
            return False
        upcoming = trainer.current_epoch + 1
        last = trainer.max_epochs is not None and trainer.max_epochs > 0 and upcoming >= trainer.max_epochs
        return upcoming % self.every_n_epochs == 0 or (self.at_train_end and last)

    def recorded(self, step: int) -> dict[str, torch.Tensor] | None:
        """The val probe's activations recorded during the validation at `step`, once; None if there are none."""
        captured, self.captured = self.captured, None
        if captured is None or captured[0] != step:
            return None
        if not self.reused:
            log.info("ActivationID takes the val probe's activations from Lightning's validation pass")
        self.reused += 1
        return captured[1]

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Measure the final network once more unless this step was just measured; draw the last profile."""
        if self.at_train_end:
            self.measure(trainer, pl_module, final=True)
        self.captured = None
        self.settle(wait=True)
        if self.unplotted is not None:
            self.draw(trainer, *self.unplotted)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        """Finish a measurement in flight so its rows are kept; its own failure is logged, not raised over this one."""
        if self.capture is not None:  # the hooks of an interrupted validation pass
            self.capture.why = "interrupted"
            self.capture.close()
            self.capture = self.captured = None
        try:
            self.settle(wait=True)
        except Exception as error:  # noqa: BLE001 - the run is already failing with `exception`
            log.warning("ActivationID: the measurement in flight failed too (%s: %s)", type(error).__name__, error)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Stop the worker thread."""
        if self.worker is not None and stage == "fit":
            self.worker.shutdown(wait=True)
            self.worker, self.stream, self.pending = None, None, None

    def state_dict(self) -> dict[str, int]:
        """The last measured step, so a resumed run does not repeat it. A measurement still in flight is finished
        and written first: a checkpoint never names a step whose rows are not in id.csv."""
        self.settle(wait=True)
        return {"last_step": self.last_step}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        """Restore the last measured step."""
        self.last_step = int(state_dict.get("last_step", -1))
        self.resumed = True

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """After a resume, drop the id.csv rows measured after the checkpoint: this run measures them again.
        Start the worker thread where `background` applies (the model is on its device by now)."""
        if not trainer.is_global_zero:
            return
        if self.resumed:
            drop_rows_after(self.csv_file(trainer), self.last_step)
        device = device_of(pl_module)
        if self.worker is None and (self.background is True or (self.background == "auto" and device.type == "cuda")):
            self.worker = ThreadPoolExecutor(1, thread_name_prefix="activation-id")
            self.stream = torch.cuda.Stream(device) if device.type == "cuda" else None
            log.info("ActivationID estimates in a worker thread%s while training goes on",
                     " on its own CUDA stream" if self.stream is not None else "")

    def csv_file(self, trainer: pl.Trainer) -> Path:
        """Where the rows go: csv_path, else <default_root_dir>/id.csv."""
        return Path(self.csv_path) if self.csv_path else Path(trainer.default_root_dir) / "id.csv"

    def measure(self, trainer: pl.Trainer, pl_module: pl.LightningModule, final: bool = False) -> None:
        """Rank zero alone runs the probe pass and logs; no collective is called, so other ranks never wait on one.
        The probe forward runs here; the estimates here too, or in the worker thread (`background`)."""
        step = trainer.global_step
        if trainer.sanity_checking or step == self.last_step:
            return
        self.last_step = step
        if not trainer.is_global_zero:
            return
        self.settle(wait=True)  # one measurement in flight at most: it holds the probe's activations
        recorded = self.recorded(step)
        probes = ((split, recorded if split == "val" and recorded is not None else self.activations(pl_module, x))
                  for split, (x, _) in self.probes.items())
        drawn = final or self.measured % self.figure_every == 0
        self.measured += 1
        writers = figure_writers(trainer) if drawn and self.figure else []
        if self.worker is None:  # in line, one split's activations at a time
            self.report(trainer, step, self.estimate_all(step, probes, writers), drawn)
            return
        probes = list(probes)
        if self.stream is not None:  # the worker's stream starts after the probe forward; the caching allocator
            self.stream.wait_stream(torch.cuda.current_stream())  # keeps the activations until that stream is done
            for points in (p for _, layers in probes for p in layers.values() if p.is_cuda):
                points.record_stream(self.stream)
        self.pending = (trainer, self.worker.submit(self.in_background, step, probes, writers, drawn))

    def activations(self, pl_module: pl.LightningModule, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """{layer: (N, F) activations} of the probe x, the network in eval mode without autograd."""
        with evaluation(pl_module):
            return collect_activations(forward_module(pl_module), base_model(forward_module(pl_module)), self.layers,
                                       x, self.batch_size, device_of(pl_module), self.sequence_reduction, self.store)

    def in_background(self, step: int, probes: list[tuple[str, dict[str, torch.Tensor]]], writers: list[Any],
                      drawn: bool) -> tuple[int, list[Measurement] | None, bool]:
        """The worker thread's job: estimate_all on the worker's stream, without autograd."""
        with torch.no_grad(), torch.cuda.stream(self.stream) if self.stream is not None else nullcontext():
            rows = self.estimate_all(step, probes, writers)
            if self.stream is not None:
                self.stream.synchronize()
        return step, rows, drawn

    def settle(self, wait: bool) -> None:
        """Report the measurement in flight if it is done (or, with `wait`, once it is); re-raise its error here."""
        if self.pending is None or not (wait or self.pending[1].done()):
            return
        (trainer, future), self.pending = self.pending, None
        self.report(trainer, *future.result())

    def estimate_all(self, step: int, probes: Iterable[tuple[str, dict[str, torch.Tensor]]],
                     writers: list[Any]) -> list[Measurement] | None:
        """Every split's rows (None if some activations are not finite), and the figures drawn into `writers`.
        Each layer's activations are released as soon as its estimates are done."""
        rows: list[Measurement] = []
        for split, layers in probes:
            broken = [layer for layer, points in layers.items() if not torch.isfinite(points).all()]
            if broken:  # diverged weights: the NaN guard ends the run at its next check; measure nothing
                log.warning("step %d: activations of %s are NaN/inf; activation ID skipped", step, broken)
                return None
            for layer in list(layers):
                rows += self.estimate(step, split, layer, layers.pop(layer), self.probes[split][1])
        if writers:
            self.publish(writers, step, rows)
        return rows

    def estimate(self, step: int, split: str, layer: str, points: torch.Tensor, y: torch.Tensor) -> list[Measurement]:
        """Every estimator applying to the layer, the neighbour-based ones from ONE exact search of its points."""
        estimators = [e for e in self.estimators if layer in self.applies[e.tag]]
        need = max((e.neighbours for e in estimators), default=0)
        candidates = max([e.candidates for e in estimators] + [need + max(2, need // 4)])
        rows = []
        try:
            found = distinct_search(points, need, candidates) if need else None
            for estimator in estimators:
                for reading in estimator.read(points, y, found):
                    name = f"{estimator.tag}/{reading.name}" if reading.name else estimator.tag
                    rows.append(Measurement(step, split, layer, name, reading.value, reading.std, reading.scale))
        except ValueError as error:
            raise ValueError(f"ActivationID at step {step}, {split} probe, layer {layer!r}: {error}") from error
        return rows

    def report(self, trainer: pl.Trainer, step: int, rows: list[Measurement] | None, drawn: bool) -> None:
        """Log scalars to every logger at the measured step and append id.csv; keep an undrawn profile for the end."""
        if rows is None:
            return
        metrics = metrics_dict(rows, self.prefixes, profiled_ids(self.estimators), self.layers,
                               self.llid_layer)
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=step)
        trainer.callback_metrics.update({k: torch.tensor(v, dtype=torch.float64) for k, v in metrics.items()})
        append_csv(self.csv_file(trainer), rows)
        self.unplotted = None if drawn else (step, rows)

    def draw(self, trainer: pl.Trainer, step: int, rows: list[Measurement]) -> None:
        """Draw a measurement's figures into every logger that takes them, now."""
        self.unplotted = None
        if self.figure:
            self.publish(figure_writers(trainer), step, rows)

    def publish(self, writers: list[Any], step: int, rows: list[Measurement]) -> None:
        """Add the figures to each writer: ID vs depth (first ID estimator), overlap vs depth, and ID vs scale per
        layer (per-scale estimators)."""
        if not writers:
            return
        figures = {}
        id_tags = profiled_ids(self.estimators)
        depth = [(e.tag, "intrinsic dimension") for e in self.estimators if id_tags and e.tag == id_tags[0]]
        depth += [(e.tag, e.profile_label) for e in self.estimators if e.profile_label]
        for tag, ylabel in depth:
            profiles = {split: [r for r in rows if r.split == split and r.estimator == tag] for split in self.probes}
            figures[f"{self.prefixes[tag]}_profile"] = profile_figure(profiles, f"{tag} of activations, step {step}",
                                                                      ylabel)
        for estimator in (e for e in self.estimators if e.per_scale):
            for layer in self.applies[estimator.tag]:
                curves = {split: [r for r in rows if r.split == split and r.layer == layer
                                  and r.estimator.partition("/")[0] == estimator.tag] for split in self.probes}
                title = f"{estimator.tag} of {layer}, step {step}"
                figures[f"{self.prefixes[estimator.tag]}_vs_scale/{layer}"] = scale_figure(curves, title)
        for writer in writers:
            for tag, figure in figures.items():
                writer.add_figure(tag, figure, step)


def figure_writers(trainer: pl.Trainer) -> list[Any]:
    """The loggers' experiments that take figures (tensorboard's SummaryWriter)."""
    return [lg.experiment for lg in trainer.loggers if hasattr(getattr(lg, "experiment", None), "add_figure")]


def check_options(splits: Sequence[str], num_samples: int | None, every_n_steps: int | None,
                  every_n_epochs: int | None, sequence_reduction: str, batch_size: int) -> None:
    """Raise a ValueError naming the first bad constructor argument and its fix."""
    bad = [s for s in splits if s not in SPLITS]
    if not splits or bad:
        raise ValueError(f"callbacks.activation_id.splits={list(splits)}: use a non-empty subset of {list(SPLITS)}")
    if num_samples is not None and num_samples < 3:
        raise ValueError(f"callbacks.activation_id.num_samples={num_samples}: TwoNN needs at least 3 probe points "
                         "(thousands for a stable estimate); use e.g. 2000, or null for the whole split")
    if (every_n_steps is None) == (every_n_epochs is None):
        raise ValueError(f"set exactly one of callbacks.activation_id.every_n_steps (got {every_n_steps}) and "
                         f"every_n_epochs (got {every_n_epochs}); null the other")
    cadence = every_n_steps if every_n_steps is not None else every_n_epochs
    if cadence < 1:
        raise ValueError(f"the ActivationID cadence must be >= 1, got {cadence}")
    if sequence_reduction not in REDUCTIONS:
        raise ValueError(f"callbacks.activation_id.sequence_reduction={sequence_reduction!r}: "
                         f"use one of {list(REDUCTIONS)}")
    if batch_size < 1:
        raise ValueError(f"callbacks.activation_id.batch_size={batch_size} must be >= 1")


def prefixes_for(estimators: Sequence[Estimator]) -> dict[str, str]:
    """Log prefix per estimator tag: `id` for the first single-valued ID estimator, the tag itself for the others."""
    first_id = next(iter(profiled_ids(estimators)), None)
    return {e.tag: "id" if e.tag == first_id else e.tag for e in estimators}


def profiled_ids(estimators: Sequence[Estimator]) -> list[str]:
    """Tags of the ID estimators with one value per layer: they get LLID/PID and the ID-vs-depth profile."""
    return [e.tag for e in estimators if e.is_id and not e.per_scale]


def estimator_layers(estimators: Sequence[Estimator], layers: Sequence[str]) -> dict[str, list[str]]:
    """Tracked layers each estimator applies to (its `layers:` globs, else all); a glob matching none is an error."""
    applies = {}
    for estimator in estimators:
        chosen = list(layers)
        if estimator.layers is not None:
            for pattern in estimator.layers:
                if not any(matches(pattern, layer) for layer in layers):
                    raise ValueError(f"estimator {estimator.tag!r}: layers entry {pattern!r} matches none of the "
                                     f"tracked layers {list(layers)}")
            chosen = [layer for layer in layers if any(matches(p, layer) for p in estimator.layers)]
        applies[estimator.tag] = chosen
    return applies


def check_probe_size(estimators: Sequence[Estimator], n: int, what: str) -> None:
    """Raise, naming the option, if some estimator cannot run on n probe points (range_max, k, n2 too large)."""
    for estimator in estimators:
        try:
            estimator.check_points(n)
        except ValueError as error:
            raise ValueError(f"callbacks.activation_id: {what} is too small for estimator {estimator.tag!r}: "
                             f"{error}") from error


def forward_module(pl_module: pl.LightningModule) -> nn.Module:
    """The adapted network the LightningModule trains (`.net` by idlab's contract), else the module itself."""
    net = getattr(pl_module, "net", None)
    return net if isinstance(net, nn.Module) else pl_module


def device_of(module: nn.Module) -> torch.device:
    """Where the module's parameters live (CPU for a parameterless module)."""
    return next((p.device for p in module.parameters()), torch.device("cpu"))


def draw_probe(trainer: pl.Trainer, split: str, num_samples: int | None,
               seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, int]:
    """A fixed, seeded subset (x, y) of a split, model-ready (no augmentation), the split rows it took (None: all, in
    order) and the split's size."""
    x, y = split_tensors(trainer, split)
    n = len(x)
    if num_samples is not None and num_samples > n:
        raise ValueError(f"callbacks.activation_id.num_samples={num_samples} exceeds the {n} examples of the {split} "
                         f"split; use num_samples<={n} or null for the whole split")
    if n < 3:
        raise ValueError(f"the {split} split has {n} examples; activation ID needs at least 3")
    if num_samples is None:
        return x, y, None, n
    index = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:num_samples]
    return x[index.to(x.device)], y[index.to(y.device)], index, n


def split_tensors(trainer: pl.Trainer, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Whole split as tensors: idlab datamodules' `split_tensors`, else the split's loader collected in order."""
    data = trainer.datamodule
    if data is not None and hasattr(data, "split_tensors"):
        return data.split_tensors(split)
    source = data if data is not None else trainer.lightning_module
    loader = getattr(source, f"{split}_dataloader")()
    batches = [(b[0], b[1]) for b in loader]
    return torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
