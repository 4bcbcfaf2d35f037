"""Graph-captured training steps: the whole optimiser step captured once in a CUDA graph and replayed.

A step of a small model (Li et al.'s FC, a Fastfood subspace, a grokking transformer) is tens of microseconds
of GPU work and milliseconds of Python: kernel launches, Lightning's hooks and logging. On CUDA, with the
training split held on the GPU, `GraphRunner` therefore

- captures forward, loss, backward, gradient clipping, the optimiser update, the learning-rate update and the
  bookkeeping below into one CUDA graph per batch size, after `warmup_steps` eager steps of that size on a
  side stream, and replays it; batches are gathered inside the graph from a device index table (or, when the
  data module augments, filled into static buffers by the usual eager transform);
- keeps the learning rate as a device tensor that the graph rewrites from a table of the run's schedule, indexed
  by a device step counter (fused Adam/AdamW/SGD read a tensor learning rate);
- records each step's loss·batch and correct count on the device; a chunk's losses are copied to pinned host
  memory and checked for NaN/inf a chunk later (`StepLossWatch`), and before every validation and checkpoint;
- runs several optimiser steps per Lightning batch (`Chunk`s of the data module), cut so that every step a
  logger or callback acts on still starts or ends a Lightning batch; Lightning's step counters advance by the
  steps each chunk ran, so global_step, checkpoints, resume and every cadence are those of the eager loop.

`graph.mode=emulate` runs the same chunks, counters and checks without capture (on the CPU too): the tests use it
to show the path equals the eager loop bit for bit. Where capture cannot work (CPU, several devices, another
precision, data on the CPU, an optimiser without a tensor learning rate, a callback inside the optimiser step)
`graph.mode=auto` trains eagerly and says why in one log line; `graph.mode=on` raises `GraphCaptureError`.
"""
from __future__ import annotations

import logging
import sys
import warnings
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from pytorch_lightning.callbacks import Callback, LearningRateMonitor, ModelCheckpoint, ProgressBar
from pytorch_lightning.strategies import SingleDeviceStrategy
from torch import Tensor

from idlab.data.chunks import Chunk, ChunkPlan

if TYPE_CHECKING:
    import pytorch_lightning as pl

log = logging.getLogger(__name__)

MODES = ("auto", "on", "off", "emulate")
READY_BYTES = 4 * 2**30  # pre-transform the training split on the device when it fits in this
OPTIMIZERS = ("Adam", "AdamW", "SGD")
STEP_HOOKS = ("on_before_backward", "on_after_backward", "on_before_optimizer_step", "on_before_zero_grad")
BATCH_HOOKS = ("on_train_batch_start", "on_train_batch_end")
ACTIVATION_ID, SNAPSHOTS = "idlab.callbacks.activation_id.ActivationID", "idlab.callbacks.snapshots.Snapshots"


class GraphCaptureError(ValueError):
    """graph.mode=on asked for captured steps where they cannot work; the message names why."""


@dataclass
class Cadence:
    """Global steps at which a Lightning batch must start: the steps some logger or callback acts on."""

    every: set[int] = field(default_factory=set)  # multiples of these
    steps: set[int] = field(default_factory=set)  # these steps
    log_every: int = 0  # step ≡ n-1 (mod n) runs alone: Lightning logs that step's values and its lr
    max_steps: int = -1
    last: int = -1  # the run's last step runs alone: the step values Lightning keeps at the end are that step's

    def cut(self, step: int) -> bool:
        """Whether a Lightning batch must start at global step `step`."""
        if step in self.steps or step in (self.max_steps, self.last) or any(step % m == 0 for m in self.every):
            return True
        n = self.log_every
        return n > 0 and step % n in (0, n - 1)


def split_steps(start: int, count: int, longest: int, cadence: Cadence) -> list[int]:
    """Chunk lengths covering `count` steps from global step `start`: at most `longest`, cut at the cadence."""
    lengths, step, end = [], start, start + count
    while step < end:
        stop = step + 1
        while stop < end and stop - step < longest and not cadence.cut(stop):
            stop += 1
        lengths.append(stop - step)
        step = stop
    return lengths


class GraphPolicy:
    """Config node `graph`: whether training steps are captured in CUDA graphs (`mode`) and chunked.

    mode: auto (capture where it applies, else eager with one log line), on (capture or raise), off (Lightning's
    eager step), emulate (the graph path's chunks and device bookkeeping without capture, any device).
    steps_per_batch: the most optimiser steps one Lightning batch runs. warmup_steps: eager steps of each batch
    size before its capture.
    """

    def __init__(self, mode: str = "auto", steps_per_batch: int = 64, warmup_steps: int = 2) -> None:
        mode = {True: "on", False: "off"}.get(mode, mode)  # graph.mode=true/false on the command line
        if mode not in MODES:
            raise ValueError(f"graph.mode={mode!r}; choose one of {', '.join(MODES)}")
        if not isinstance(steps_per_batch, int) or steps_per_batch < 1:
            raise ValueError(f"graph.steps_per_batch={steps_per_batch!r} must be a positive integer")
        if not isinstance(warmup_steps, int) or warmup_steps < 1:
            raise ValueError(f"graph.warmup_steps={warmup_steps!r} must be a positive integer (eager steps "
                             "before capture)")
        self.mode, self.steps_per_batch, self.warmup_steps = mode, steps_per_batch, warmup_steps

    def prepare(self, module: "pl.LightningModule") -> "GraphRunner | None":
        """At setup("fit"): a runner (and chunked training data), or None for eager steps (with the reason logged)."""
        if self.mode == "off":
            return None
        capture = self.mode != "emulate"
        reason = blocker(module.trainer, module, capture)
        if reason is not None:
            if self.mode == "on":
                raise GraphCaptureError(f"graph.mode=on but {reason}; use graph.mode=auto (eager steps where "
                                        "capture cannot work) or graph.mode=off")
            log.info("graph: training steps run eagerly: %s (graph.mode=%s)", reason, self.mode)
            return None
        longest, why = self.steps_per_batch, per_batch_callback(module.trainer)
        if why is None:
            why = chunking_limit(module.trainer)
        if why is not None:
            longest = 1
        runner = GraphRunner(module, self, capture, longest, cadence(module.trainer))
        module.trainer.datamodule.train_chunks = runner
        how = "captured in CUDA graphs and replayed" if capture else "run eagerly through the graph path (emulate)"
        log.info("graph: training steps are %s, up to %d per Lightning batch%s", how, longest,
                 f" ({why})" if why else "")
        return runner


def blocker(trainer: "pl.Trainer", module: "pl.LightningModule", capture: bool) -> str | None:
    """Why the graph path cannot run this fit, or None."""
    from idlab.data.base import TensorDataModule

    device = trainer.strategy.root_device
    if capture and device.type != "cuda":
        return f"the training device is {device.type}; CUDA graphs need a GPU"
    if not isinstance(trainer.strategy, SingleDeviceStrategy) or trainer.world_size != 1:
        return (f"strategy {type(trainer.strategy).__name__} runs several processes or devices; capture covers "
                "one device")
    if str(trainer.precision) not in ("32-true", "32"):
        return f"trainer.precision={trainer.precision}; captured steps support 32-true"
    if trainer.accumulate_grad_batches != 1:
        return f"trainer.accumulate_grad_batches={trainer.accumulate_grad_batches}; captured steps update every batch"
    data = trainer.datamodule
    if not isinstance(data, TensorDataModule) or data.splits is None:
        return "the data module does not hold its splits as tensors (idlab.data.base.TensorDataModule)"
    if capture and data.splits["train"].x.device != device:
        return "the training split is not on the GPU (data.on_device=false)"
    factory = getattr(module, "optimizer_factory", None)
    cls = getattr(factory, "func", factory)
    name = getattr(cls, "__name__", type(cls).__name__)
    if name not in OPTIMIZERS:
        return f"optimizer {name}: captured steps support {', '.join(OPTIMIZERS)} (a tensor learning rate)"
    for callback in trainer.callbacks:
        hook = next((h for h in STEP_HOOKS if _overrides(callback, h)), None)
        if hook is not None:
            return f"callback {type(callback).__name__} acts inside the optimiser step ({hook})"
    return None


def per_batch_callback(trainer: "pl.Trainer") -> str | None:
    """A callback whose per-batch hooks the graph path cannot keep at their steps (so one step per batch)."""
    for callback in trainer.callbacks:
        if _known(callback) or not any(_overrides(callback, h) for h in BATCH_HOOKS):
            continue
        return f"callback {type(callback).__name__} acts on every training batch"
    return None


def chunking_limit(trainer: "pl.Trainer") -> str | None:
    """A trainer setting that counts Lightning batches in a way chunks would change."""
    limit = trainer.limit_train_batches
    if isinstance(limit, float) and limit != 1.0:
        return f"trainer.limit_train_batches={limit} is a fraction"
    if trainer.val_check_interval != 1.0:
        return f"trainer.val_check_interval={trainer.val_check_interval}"
    return None


def cadence(trainer: "pl.Trainer") -> Cadence:
    """The steps the trainer's loggers and known callbacks act on."""
    ActivationID, Snapshots = _loaded(ACTIVATION_ID), _loaded(SNAPSHOTS)
    out = Cadence(max_steps=trainer.max_steps if trainer.max_steps and trainer.max_steps > 0 else -1)
    if trainer.loggers:
        out.log_every = int(trainer.log_every_n_steps)
    for callback in trainer.callbacks:
        out.steps |= set(getattr(callback, "graph_steps", ()))
        if isinstance(callback, ModelCheckpoint) and callback._every_n_train_steps:  # noqa: SLF001
            out.every.add(int(callback._every_n_train_steps))  # noqa: SLF001
        elif isinstance(callback, Snapshots):
            out.steps |= set(callback.steps)
        elif isinstance(callback, ActivationID) and callback.every_n_steps:
            out.every.add(int(callback.every_n_steps))
    return out


def _known(callback: Callback) -> bool:
    """Callbacks whose batch hooks `cadence` accounts for (or which only draw progress). Any callback can say
    which global steps its batch hooks need to see a batch start at with an attribute `graph_steps`."""
    return hasattr(callback, "graph_steps") or isinstance(
        callback, (ModelCheckpoint, LearningRateMonitor, ProgressBar, _loaded(SNAPSHOTS), _loaded(ACTIVATION_ID)))


def _loaded(path: str) -> type | tuple[()]:
    """A class of a module already imported, else () (for isinstance: nothing is an instance): no instance of it
    can be among the trainer's callbacks, so a fit without activation ID never imports idlab.id and with it
    scikit-dimension and scikit-learn (~1 s per process)."""
    module, _, name = path.rpartition(".")
    return getattr(sys.modules.get(module), name, ())


def _overrides(callback: Callback, hook: str) -> bool:
    """Whether the callback's class defines its own `hook`."""
    return getattr(type(callback), hook, None) is not getattr(Callback, hook)


class StepLossWatch:
    """NaN/inf detection for chunks: each chunk's per-step losses go to pinned memory; `poll` never waits.

    `check` (before validation and checkpoints) waits for the copies; both return the first non-finite step.
    """

    def __init__(self) -> None:
        self.pending: deque[tuple[int, Tensor, torch.cuda.Event | None]] = deque()
        self.found: int | None = None

    def push(self, start: int, losses: Tensor) -> None:
        """Queue the losses of the chunk that started at global step `start`."""
        if not losses.is_cuda:
            self.pending.append((start, losses.clone(), None))
            return
        host = torch.empty(losses.shape, dtype=losses.dtype, pin_memory=True)
        host.copy_(losses, non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        self.pending.append((start, host, event))

    def poll(self) -> int | None:
        """Examine the chunks whose copies have landed; no waiting."""
        while self.pending and (self.pending[0][2] is None or self.pending[0][2].query()):
            self._examine(*self.pending.popleft()[:2])
        return self.found

    def check(self) -> int | None:
        """Examine every queued chunk, waiting for the copies."""
        while self.pending:
            start, host, event = self.pending.popleft()
            if event is not None:
                event.synchronize()
            self._examine(start, host)
        return self.found

    def _examine(self, start: int, host: Tensor) -> None:
        bad = torch.nonzero(~torch.isfinite(host))
        if self.found is None and len(bad):
            self.found = start + int(bad[0, 0])


class GraphRunner(ChunkPlan):
    """Runs a fit's training chunks: device bookkeeping, eager warm-up, capture per batch size, replay."""

    def __init__(self, module: "pl.LightningModule", policy: GraphPolicy, capture: bool, longest: int,
                 cadence: Cadence) -> None:
        self.module, self.trainer, self.policy = module, module.trainer, policy
        self.capture, self.longest, self.cadence = capture, longest, cadence
        self.active = False
        self.watch = StepLossWatch()
        self.steps = 0  # optimiser steps of the chunk that just ran
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self.seen: dict[int, int] = {}
        self.static: dict[int, tuple[Tensor, Tensor]] = {}

    # ChunkPlan: where the data module's chunks end
    def position(self) -> tuple[int, int]:
        """(global step, batches already done in this epoch) when an epoch's batches start."""
        return self.trainer.global_step, self.trainer.fit_loop.epoch_loop.batch_progress.current.ready

    def split(self, start: int, count: int) -> list[int]:
        """Chunks of at most `longest` steps, cut at the cadence."""
        if self.cadence.last < 0:
            self.cadence.last = int(self.trainer.estimated_stepping_batches) - 1
        return split_steps(start, count, self.longest, self.cadence)

    def limit(self, batches: int) -> int:
        """An integer limit_train_batches caps the steps of an epoch (a fraction means one step per chunk)."""
        limit = self.trainer.limit_train_batches
        return min(batches, limit) if isinstance(limit, int) else batches

    def activate(self) -> None:
        """Before the first chunk (after any checkpoint restore): device state, fused optimiser, lr tables."""
        trainer, module = self.trainer, self.module
        self.device = trainer.strategy.root_device
        self.cuda = self.device.type == "cuda"
        self.net = module.net
        self.optimizer = trainer.optimizers[0]
        self.params = [p for group in self.optimizer.param_groups for p in group["params"]]
        self.clip_value = trainer.gradient_clip_val or 0.0
        self.clip_norm = str(trainer.gradient_clip_algorithm or "norm").lower().endswith("norm")
        step = trainer.global_step
        self.tables = lr_tables(self.optimizer, trainer.lr_scheduler_configs, int(trainer.estimated_stepping_batches),
                                self.longest)
        self.host_step = step
        self.saved_groups = [{k: g[k] for k in ("fused", "foreach", "capturable") if k in g}
                             for g in self.optimizer.param_groups]
        if self.cuda:
            self.lr_views, self.lr_tables = [], []
            for group, table in zip(self.optimizer.param_groups, self.tables):
                group["fused"], group["foreach"] = True, False  # one kernel, reads a tensor learning rate
                if "capturable" in group:  # fused ignores it, but Adam's step refuses capture without it
                    group["capturable"] = True
                group["lr"] = torch.tensor(table[min(step, len(table) - 1)], dtype=torch.float32, device=self.device)
                self.lr_views.append(group["lr"].view(1))
                self.lr_tables.append(torch.tensor(table, dtype=torch.float32, device=self.device))
            for state in self.optimizer.state.values():
                if "step" in state:
                    state["step"] = state["step"].to(device=self.device, dtype=torch.float32)
            self.counter = torch.full((1,), step, dtype=torch.int64, device=self.device)
            self.stream = torch.cuda.Stream(self.device)
            self.pool = None
        data = trainer.datamodule
        split = data.splits["train"]
        self.x_all, self.y_all, self.transform = split.x, split.y, data.transform
        self.gather = not data.augment
        self.x_ready = None
        if self.gather:
            self.x_ready = ready_inputs(split.x, data.transform)
        self.index = torch.zeros(self.longest, data.batch_size, dtype=torch.int64, device=self.device)
        self.slot = torch.zeros(1, dtype=torch.int64, device=self.device)
        self.losses = torch.zeros(self.longest, dtype=torch.float32, device=self.device)
        self.correct = torch.zeros(self.longest, dtype=torch.int64, device=self.device)
        warnings.filterwarnings("ignore", message=r".*`training_step` returned `None`")
        self.active = True

    def train_chunk(self, chunk: Chunk) -> tuple[Tensor, Tensor]:
        """Run the chunk's optimiser steps; returns its mean loss and accuracy (device tensors, no sync)."""
        if not self.active:
            self.activate()
        if chunk.start != self.trainer.global_step:
            raise RuntimeError(f"internal: chunk planned for step {chunk.start} at global step "
                               f"{self.trainer.global_step}")
        if self.watch.poll() is not None:
            self.module.raise_if_nonfinite()
        steps = chunk.steps
        self.index[:steps].copy_(chunk.index, non_blocking=True)
        self.slot.zero_()
        for k, (size, seed) in enumerate(zip(chunk.sizes, chunk.seeds)):
            if not self.gather:
                self._feed(k, size, seed)
            self._run_step(size)
        self.watch.push(chunk.start, self.losses[:steps])
        self.steps, self.last_size = steps, chunk.sizes[-1]
        return self.losses[:steps].sum() / chunk.examples, self.correct[:steps].sum() / chunk.examples

    def last_batch(self) -> tuple[Tensor, Tensor]:
        """The last chunk's last batch as the model read it (the guard's loss check before a checkpoint)."""
        if not self.gather:
            return self.static[self.last_size]
        row = self.index[self.steps - 1, :self.last_size]
        x = self.x_ready[row] if self.x_ready is not None else self.transform(self.x_all[row], None)
        return x, self.y_all[row]

    def _feed(self, k: int, size: int, seed: int | None) -> None:
        """Augmenting data: the eager transform of batch k into the static buffers of its size."""
        idx = self.index[k, :size]
        gen = torch.Generator(device=self.device).manual_seed(seed) if seed is not None else None
        x, y = self.transform(self.x_all[idx], gen), self.y_all[idx]
        if size not in self.static:
            self.static[size] = (torch.empty_like(x), torch.empty_like(y))
        sx, sy = self.static[size]
        sx.copy_(x)
        sy.copy_(y)

    def _run_step(self, size: int) -> None:
        """Replay this batch size's graph; warm it up eagerly first, then capture it."""
        graph = self.graphs.get(size)
        if graph is None and self.capture and self.seen.get(size, 0) >= self.policy.warmup_steps:
            graph = self._capture(size)
        if graph is not None:
            graph.replay()
            return
        self.seen[size] = self.seen.get(size, 0) + 1
        if self.capture:  # warm-up on the capture stream: lazy initialisation happens where capture will run
            self.stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(self.stream):
                self._step(size)
            torch.cuda.current_stream().wait_stream(self.stream)
        else:
            self._step(size)

    def _capture(self, size: int) -> torch.cuda.CUDAGraph | None:
        """Capture one step of `size` examples (nothing runs: the caller replays it)."""
        graph = torch.cuda.CUDAGraph()
        for p in self.params:
            p.grad = None  # gradients are then allocated from the graph's pool
        self.stream.wait_stream(torch.cuda.current_stream())
        try:  # capture_begin/end rather than torch.cuda.graph, which synchronises the whole device and empties
            with torch.cuda.stream(self.stream):  # the allocator's cache (other runs may be training beside us)
                graph.capture_begin(pool=self.pool, capture_error_mode="thread_local")
                failure = None
                try:
                    self._step(size)
                except Exception as err:  # noqa: BLE001 - reported below, after the capture is closed
                    failure = err
                try:
                    graph.capture_end()
                except Exception as err:  # noqa: BLE001
                    failure = failure or err
                if failure is not None:
                    raise failure
        except Exception as err:  # noqa: BLE001 - an op that cannot be captured; re-raised or logged once
            torch.cuda.current_stream().wait_stream(self.stream)
            if self.policy.mode == "on":
                raise GraphCaptureError(f"graph.mode=on but capturing the training step failed "
                                        f"({type(err).__name__}: {err}); use graph.mode=auto or off") from err
            log.warning("graph: capturing the training step failed (%s: %s); the rest of the run steps eagerly",
                        type(err).__name__, err)
            self.capture = False
            return None
        torch.cuda.current_stream().wait_stream(self.stream)
        self.graphs[size] = graph
        if self.pool is None:
            self.pool = graph.pool()
        return graph

    def _step(self, size: int) -> None:
        """One optimiser step on the batch of index row `slot` (eager, or recorded under capture)."""
        if self.gather:
            row = self.index.index_select(0, self.slot)[0, :size]
            x = self.x_ready.index_select(0, row) if self.x_ready is not None else \
                self.transform(self.x_all.index_select(0, row), None)
            y = self.y_all.index_select(0, row)
        else:
            x, y = self.static[size]
        for p in self.params:
            p.grad = None
        logits = self.net(x)
        loss = F.cross_entropy(logits, y)
        loss.backward()
        if self.clip_value:
            clip = torch.nn.utils.clip_grad_norm_ if self.clip_norm else torch.nn.utils.clip_grad_value_
            clip(self.params, self.clip_value)
        self.optimizer.step()
        with torch.no_grad():
            self.losses.index_copy_(0, self.slot, (loss.detach() * size).view(1))
            self.correct.index_copy_(0, self.slot, (logits.argmax(-1) == y).sum().view(1))
            self.slot += 1
            if self.cuda:
                self.counter += 1
                for table, view in zip(self.lr_tables, self.lr_views):
                    torch.index_select(table, 0, self.counter, out=view)
            else:
                self.host_step += 1
                for group, table in zip(self.optimizer.param_groups, self.tables):
                    group["lr"] = table[min(self.host_step, len(table) - 1)]

    def advance_counters(self) -> None:
        """Lightning counted one batch and one optimiser step: add the chunk's other steps to every counter."""
        extra = self.steps - 1
        loop = self.trainer.fit_loop.epoch_loop
        last = loop.batch_progress.current.ready + extra >= self.trainer.num_training_batches
        loop.batch_progress.increment_by(extra, is_last_batch=last)  # the fetcher counts chunks: say it here
        optim = loop.automatic_optimization.optim_progress.optimizer
        optim.step.increment_by(extra)
        optim.zero_grad.increment_by(extra)
        loop.scheduler_progress.increment_by(extra)
        loop._batches_that_stepped += extra  # noqa: SLF001 - the step loggers write at

    def sync_scheduler(self, scheduler: Any) -> None:
        """The graph already set this step's learning rate: bring the scheduler's state (checkpointed) level."""
        step = self.trainer.global_step
        scheduler.last_epoch, scheduler._step_count = step, step + 1  # noqa: SLF001 - as step() would leave them
        scheduler._last_lr = [table[min(step, len(table) - 1)] for table in self.tables]  # noqa: SLF001

    def export_optimizer_state(self, checkpoint: dict) -> None:
        """Checkpoints hold float learning rates and the configured fused/foreach flags, as eager runs write them."""
        for state in checkpoint.get("optimizer_states", []):
            for group, saved in zip(state["param_groups"], self.saved_groups):
                if isinstance(group.get("lr"), Tensor):
                    group["lr"] = float(group["lr"])
                group.update(saved)

    def close(self) -> None:
        """Release the graphs and hand the data module back its ordinary batches."""
        for graph in self.graphs.values():
            graph.reset()
        self.graphs.clear()
        self.trainer.datamodule.train_chunks = None


def lr_tables(optimizer: torch.optim.Optimizer, configs: list, total: int, pad: int) -> list[list[float]]:
    """Per parameter group, the learning rate of every global step 0..total (+pad): base_lr · λ(step)."""
    schedulers = [c.scheduler for c in configs if getattr(c, "interval", "step") == "step"]
    if not schedulers:
        return [[float(g["lr"])] for g in optimizer.param_groups]
    scheduler = schedulers[0]
    if not hasattr(scheduler, "lr_lambdas"):
        raise GraphCaptureError(f"scheduler {type(scheduler).__name__}: captured steps need a LambdaLR schedule")
    steps = range(total + 1 + pad)
    return [[base * lam(s) for s in steps] for base, lam in zip(scheduler.base_lrs, scheduler.lr_lambdas)]


def ready_inputs(x: Tensor, transform: Any) -> Tensor | None:
    """The whole split transformed once (per-example transforms only), or None when it would not fit."""
    probe = transform(x[:1], None)
    if probe.element_size() * probe[0].numel() * len(x) > READY_BYTES:
        return None
    return torch.cat([transform(x[i: i + 8192], None) for i in range(0, len(x), 8192)])


class GraphSteps:
    """The Lightning hooks of the graph path, mixed into the LightningModule; each falls through to Lightning's
    own when the fit trains eagerly (`self.graph` is None). The module provides `graph_policy`, `net`,
    `optimizer_factory`, `probe_batch`, `progress_bar_shown` and `raise_if_nonfinite` (which reads `graph.watch`)."""

    graph: GraphRunner | None = None
    graph_policy: GraphPolicy | None = None

    def setup(self, stage: str) -> None:  # noqa: D102 - Lightning hook
        super().setup(stage)
        if stage == "fit" and self.graph_policy is not None:
            self.graph = self.graph_policy.prepare(self)

    def train_chunk(self, chunk: Chunk) -> None:
        """training_step of a Chunk: run its steps and log their mean loss and accuracy (as the eager step logs)."""
        loss, acc = self.graph.train_chunk(chunk)
        self.probe_batch = self.graph.last_batch()  # for the guard's loss check before a checkpoint
        n = chunk.examples
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=self.progress_bar_shown, batch_size=n)
        self.log("train/acc", acc, on_step=False, on_epoch=True, sync_dist=True, batch_size=n)

    def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None) -> None:  # noqa: D102
        if self.graph is None:
            return super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        optimizer_closure()  # training_step: the chunk's steps, optimiser updates included
        self.graph.advance_counters()
        return None

    def optimizer_zero_grad(self, epoch, batch_idx, optimizer) -> None:  # noqa: D102 - the graph zeroes its own
        if self.graph is None:
            super().optimizer_zero_grad(epoch, batch_idx, optimizer)

    def lr_scheduler_step(self, scheduler, metric) -> None:  # noqa: D102
        if self.graph is None:
            return super().lr_scheduler_step(scheduler, metric)
        self.graph.sync_scheduler(scheduler)
        return None

    def graph_epoch_end(self) -> None:
        """Epoch end of the graph path: look at the losses that have landed, without waiting (checkpoints wait)."""
        if self.graph.active and self.graph.watch.poll() is not None:
            self.raise_if_nonfinite()

    def on_save_checkpoint(self, checkpoint: dict) -> None:  # noqa: D102 - no checkpoint of non-finite weights
        super().on_save_checkpoint(checkpoint)
        if self.graph is not None and self.graph.active:
            self.raise_if_nonfinite()
            self.graph.export_optimizer_state(checkpoint)

    def teardown(self, stage: str) -> None:  # noqa: D102
        super().teardown(stage)
        if stage == "fit" and self.graph is not None:
            self.graph.close()
            self.graph = None
