"""The training loop: resumable anywhere, deterministic on CPU, torchrun-compatible.

Determinism across interruptions: every epoch reseeds torch, numpy, ``random`` and the
augmentation transforms from ``(seed, epoch, rank)``; a run resumed from a mid-epoch checkpoint
replays the epoch's sampling and skips the batches it already trained on. On CPU a run killed and
resumed therefore ends with the same weights and metrics as an uninterrupted one. (No RNG state
is checkpointed: the reseed at the start of every epoch would overwrite it before any draw.)

Preemption: SIGTERM (a spot instance's notice) sets a flag; the loop finishes the current step,
writes ``last.pt`` and raises :class:`TrainingPreempted`, which the CLI turns into exit code
:data:`PREEMPTED_EXIT_CODE` (75, EX_TEMPFAIL), the code SkyPilot's ``job_recovery`` retries.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import random
import signal
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from minivess.errors import ConfigError, DataError, MinivessError
from minivess.keys import Keys
from minivess.planning.plan import TrainingPlan
from minivess.tracking.contract import Artifact, Tag
from minivess.training import checkpoint as ckpt
from minivess.training.config import TrainConfig
from minivess.training.splits import Split, kfold_split
from minivess.training.tracker import NullTracker, Tracker

if TYPE_CHECKING:
    from collections.abc import Iterator

    from torch import nn

    from minivess.planning.profiles import ModelProfile
    from minivess.training.distributed import DistContext

log = logging.getLogger(__name__)

#: Exit code of a run stopped by SIGTERM after writing its checkpoint: rerun it to resume.
PREEMPTED_EXIT_CODE = 75
#: Logged once the SIGTERM handler is in place (the rehearsal waits for it before preempting).
TRAINING_STARTED = "training started"
#: Number of output channels (background, vessel).
OUT_CHANNELS = 2
#: Version of the ``last.pt`` layout.
CHECKPOINT_FORMAT = 1


class TrainingPreempted(MinivessError):
    """SIGTERM arrived; the state is in ``checkpoint``. Rerun the same command to resume."""

    exit_code = PREEMPTED_EXIT_CODE
    #: How the MLflow run of a preempted training ends (read by the tracking adapter).
    mlflow_status = "KILLED"

    def __init__(self, checkpoint: str, epoch: int, step: int) -> None:
        super().__init__(
            f"preempted (SIGTERM) in epoch {epoch + 1} after step {step}; state saved to "
            f"{checkpoint}; rerun the same command to resume (exit code {PREEMPTED_EXIT_CODE})."
        )
        self.checkpoint = checkpoint
        self.epoch = epoch
        self.step = step


class PreemptedInSetup(TrainingPreempted):
    """SIGTERM arrived before the first training step (data gate, caching, model build).

    No step was lost: the newest consistent checkpoint is whatever ``checkpoint`` held before
    (nothing is written during setup). Rerun the same command to resume.
    """

    def __init__(self, checkpoint: str, phase: str) -> None:
        MinivessError.__init__(
            self,
            f"preempted (SIGTERM) during {phase}, before any training step; no state lost "
            f"(checkpoint: {checkpoint}); rerun the same command to resume "
            f"(exit code {PREEMPTED_EXIT_CODE}).",
        )
        self.checkpoint, self.epoch, self.step = checkpoint, 0, 0


class TrainSummary(BaseModel):
    """What a training run reports (also written as ``summary.json``)."""

    epochs_completed: int
    resumed_from_epoch: int | None = Field(description="completed epochs found at start, or None")
    best_metric: float = Field(description="best mean validation Dice (foreground)")
    best_epoch: int
    final_metrics: dict[str, float]
    checkpoint: str = Field(description="URI of best.pt")
    last_checkpoint: str = Field(description="URI of last.pt")
    checkpoint_dir: str
    fold: int
    n_folds: int
    loss: str
    seed: int
    model: str
    plan_hash: str
    split: Split
    world_size: int = 1
    history: list[dict[str, float]] = Field(default_factory=list)


class _StopFlag:
    """Set by SIGTERM; read by the loop between steps.

    While :attr:`setup_phase` names a phase (data gate, caching, model build), there is no
    new state to save, so SIGTERM raises :class:`PreemptedInSetup` at once instead: setup is
    left within a bounded time (the running volume scans finish, queued ones are dropped).
    """

    def __init__(self, checkpoint: str = "none yet") -> None:
        self.requested = False
        self.setup_phase: str | None = None
        self.checkpoint = checkpoint

    def __call__(self, signum: int, frame: Any) -> None:
        self.requested = True
        if self.setup_phase is not None:
            self.setup_phase = None  # raise once
            raise _SetupInterrupt
        log.warning("SIGTERM received: finishing this step, then writing a checkpoint")

    @contextmanager
    def setup(self, phase: str) -> Iterator[None]:
        """Within this block SIGTERM stops at once (see the class docstring)."""
        if self.requested:  # arrived before the block: stop before starting it
            raise PreemptedInSetup(self.checkpoint, phase)
        self.setup_phase = phase
        try:
            yield
        except _SetupInterrupt:
            raise PreemptedInSetup(self.checkpoint, phase) from None
        finally:
            self.setup_phase = None


class _SetupInterrupt(BaseException):
    """Raised by the SIGTERM handler during setup. A BaseException, like KeyboardInterrupt, so
    that no ``except Exception`` on the way (a logging handler, per-file isolation) swallows it;
    :meth:`_StopFlag.setup` turns it into :class:`PreemptedInSetup`."""


@contextmanager
def sigterm_flag(checkpoint: str = "none yet") -> Iterator[_StopFlag]:
    """Install the SIGTERM handler (main thread only) for the block; restore the old one."""
    flag = _StopFlag(checkpoint)
    if threading.current_thread() is not threading.main_thread():
        yield flag  # signal handlers can only be installed from the main thread
        return
    previous = signal.signal(signal.SIGTERM, flag)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGTERM, previous)


def _seed_epoch(seed: int, epoch: int, rank: int, transform: Any) -> None:
    import numpy as np
    import torch

    s = (seed * 1_000_003 + epoch * 9_973 + rank * 101) % (2**31 - 1)
    torch.manual_seed(s)
    np.random.seed(s)
    random.seed(s)
    transform.set_random_state(seed=s)


def _unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)


def validate(
    model: nn.Module, dataset: Any, plan: TrainingPlan, device: str, amp: bool
) -> dict[str, float]:
    """Sliding-window inference (plan's roi/overlap) on whole volumes; mean foreground Dice.

    Uses the evaluation's :func:`~minivess.evaluation.metrics.dice` per volume (the same Dice
    the analysis reports); MONAI's ``DiceMetric`` class would all-gather across DDP ranks, and
    only rank 0 validates.
    """
    import torch

    from minivess.evaluation.metrics import dice
    from minivess.models.sliding import sliding_window

    scores = []
    model.eval()
    with torch.no_grad(), torch.autocast(device_type="cuda", enabled=amp):
        for i in range(len(dataset)):
            item = dataset[i]
            image = item[Keys.IMAGE.value].unsqueeze(0).to(device)
            label = item[Keys.LABEL.value].unsqueeze(0).to(device)
            logits = sliding_window(image, plan, model)
            pred = logits.argmax(dim=1)[0].cpu().numpy()
            scores.append(dice(pred > 0, label[0, 0].cpu().numpy() > 0))
    model.train()
    return {"val_dice": sum(scores) / max(1, len(scores))}


class _Run:
    """One training run's state; :meth:`run` is the loop (kept in small steps)."""

    def __init__(
        self,
        data_dir: Path,
        plan: TrainingPlan,
        cfg: TrainConfig,
        tracker: Tracker,
        progress: bool,
        ctx: DistContext,
        endpoint_url: str | None = None,
        profile: ModelProfile | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.endpoint = endpoint_url
        self.plan = plan
        self.profile = profile
        self.cfg = cfg
        self.ctx = ctx
        self.tracker = tracker if ctx.is_main else NullTracker()
        self.progress = progress and ctx.is_main
        self.dir = cfg.checkpoint_dir
        self.last_uri = ckpt.join(self.dir, ckpt.LAST)
        self.best_uri = ckpt.join(self.dir, ckpt.BEST)
        self.amp = bool(plan.amp and ctx.device.startswith("cuda"))
        self.history: list[dict[str, float]] = []
        self.best_metric = float("-inf")
        self.best_epoch = -1
        self.resumed_from: int | None = None

    # -- setup ---------------------------------------------------------------------------
    def _build(self) -> None:
        import torch

        from minivess.models import build_model
        from minivess.training.data import (
            datalist,
            eval_dataset,
            plan_gate,
            train_loader,
            usable_pairs,
        )
        from minivess.training.losses import build_loss

        pairs = plan_gate(
            self.plan, usable_pairs(self.data_dir), self.data_dir, self.cfg.resampling
        )
        self.split = kfold_split(
            [p.name for p in pairs], self.cfg.n_folds, self.cfg.fold, self.cfg.seed
        )
        log.info(
            "fold %d/%d (seed %d): train %s, val %s",
            self.cfg.fold,
            self.cfg.n_folds,
            self.cfg.seed,
            self.split.train,
            self.split.val,
        )
        if self.ctx.device.startswith("cuda"):
            torch.backends.cudnn.benchmark = True  # fixed patch shapes: autotune once
        if self.plan.padded_volumes:
            log.info(
                "zero-padding %s up to the patch %s (listed in plan.padded_volumes)",
                ", ".join(self.plan.padded_volumes),
                tuple(self.plan.patch_size),
            )
        torch.manual_seed(self.cfg.seed)
        model = build_model(
            self.plan, in_channels=1, out_channels=OUT_CHANNELS, profile=self.profile
        )
        self.model = model.to(self.ctx.device)
        if self.ctx.distributed:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.ctx.local_rank] if self.ctx.device.startswith("cuda") else None
            self.model = DistributedDataParallel(self.model, device_ids=ids)
        self.loss_fn = build_loss(self.cfg.loss)
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=self.cfg.lr, weight_decay=self.cfg.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._cosine)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.loader, self.train_ds = train_loader(
            datalist(pairs, self.split.train), self.plan, self.cfg, self.ctx
        )
        self.val_ds = eval_dataset(
            datalist(pairs, self.split.val), self.cfg.resampling, self.plan.cache_rate
        )

    def _cosine(self, epoch: int) -> float:
        """Cosine factor of the base learning rate after ``epoch`` epochs (closed form, so a run
        resumed with a larger ``epochs`` follows the new schedule)."""
        return cosine_factor(epoch, self.cfg.epochs)

    def _rederive_lr(self, epoch: int) -> None:
        """Set the optimizer's learning rate to the schedule of *this* run's ``epochs``.

        The checkpoint's optimizer holds the rate its own schedule reached: 0 after a finished
        cosine schedule. Resuming with a larger ``--epochs`` re-derives the rate from the closed
        form ``base_lr · cosine_factor(epoch, epochs)`` (the schedule is re-derived, not
        stretched: epochs already trained keep the rates they had).
        """
        rates = [base * self._cosine(epoch) for base in self.scheduler.base_lrs]
        for group, lr in zip(self.optimizer.param_groups, rates, strict=True):
            group["lr"] = lr
        self.scheduler._last_lr = rates  # what get_last_lr() reports

    def _identity(self) -> dict[str, Any]:
        return {
            "plan_hash": self.plan.plan_hash,
            "loss": self.cfg.loss.value,
            "fold": self.cfg.fold,
            "n_folds": self.cfg.n_folds,
            "seed": self.cfg.seed,
        }

    def _resume(self) -> tuple[int, int, float]:
        """Load ``last.pt`` if present: returns (start epoch, steps done in it, loss sum)."""
        if not self.cfg.resume or not ckpt.exists(self.last_uri, self.endpoint):
            return 0, 0, 0.0
        # CPU first; load_state_dict moves the tensors to the device.
        state = ckpt.load_state(self.last_uri, "cpu", self.endpoint)
        found = json.loads(state["identity"])
        if found != self._identity():
            diff: dict[str, Any] = {
                k: (found.get(k), v) for k, v in self._identity().items() if found.get(k) != v
            }
            if "plan_hash" in diff:  # name the plan fields, e.g. network.params.base_filters
                with contextlib.suppress(ValueError):
                    old = TrainingPlan.model_validate_json(state["plan"])
                    diff["plan fields"] = old.differences(self.plan)
            raise ConfigError(
                f"{self.last_uri}: belongs to another run (differs in {diff}); use a new "
                f"--checkpoint-dir, or delete it to start over."
            )
        _unwrap(self.model).load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self._rederive_lr(int(state["epoch"]))
        self.scaler.load_state_dict(state["scaler"])
        self.best_metric = float(state["best_metric"])
        self.best_epoch = int(state["best_epoch"])
        self.history = json.loads(state["history"])
        epoch, step = int(state["epoch"]), int(state["step"])
        self.resumed_from = epoch
        log.info(
            "resuming from %s: %d epoch(s) done%s",
            self.last_uri,
            epoch,
            f", {step} step(s) into epoch {epoch + 1}" if step else "",
        )
        return epoch, step, float(state["loss_sum"])

    # -- checkpoints ---------------------------------------------------------------------
    def _base_state(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "plan": self.plan.model_dump_json(),
            "config": self.cfg.model_dump_json(),
            "split": self.split.model_dump_json(),
            "identity": json.dumps(self._identity()),
            "out_channels": OUT_CHANNELS,
            "target_spacing": ckpt.spacing_json(self.cfg.resampling),
            "model": _unwrap(self.model).state_dict(),
        }

    def _save_last(self, epoch: int, step: int, loss_sum: float) -> None:
        if not self.ctx.is_main:
            return
        state = self._base_state() | {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": epoch,
            "step": step,
            "loss_sum": loss_sum,
            "best_metric": self.best_metric,
            "best_epoch": self.best_epoch,
            "history": json.dumps(self.history),
        }
        ckpt.save_state(state, self.last_uri, self.endpoint)

    def _save_best(self, epoch: int) -> None:
        if not self.ctx.is_main:
            return
        state = self._base_state() | {"epoch": epoch, "best_metric": self.best_metric}
        ckpt.save_state(state, self.best_uri, self.endpoint)
        log.info("epoch %d: new best val_dice %.4f -> %s", epoch, self.best_metric, self.best_uri)

    def _save_run_files(self) -> None:
        if not self.ctx.is_main:
            return
        ckpt.write_bytes(
            ckpt.join(self.dir, ckpt.SPLIT),
            self.split.model_dump_json(indent=2).encode(),
            self.endpoint,
        )
        ckpt.write_bytes(
            ckpt.join(self.dir, ckpt.PLAN),
            self.plan.model_dump_json(indent=2).encode(),
            self.endpoint,
        )

    # -- the loop ------------------------------------------------------------------------
    def _step(self, batch: dict[str, Any], index: int) -> float:
        import torch

        from minivess.training.losses import deep_supervision_loss

        image = batch[Keys.IMAGE.value].to(self.ctx.device)
        label = batch[Keys.LABEL.value].to(self.ctx.device)
        accum = max(1, self.plan.grad_accum_steps)
        with torch.autocast(device_type="cuda", enabled=self.amp):
            loss = deep_supervision_loss(self.loss_fn, self.model(image), label)
        self.scaler.scale(loss / accum).backward()
        if (index + 1) % accum == 0:
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
        return float(loss.detach().item())

    def _flush_grads(self, n_steps: int) -> None:
        if n_steps % max(1, self.plan.grad_accum_steps):
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)

    def _epoch(self, epoch: int, skip: int, loss_sum: float, stop: _StopFlag, bar: Any) -> float:
        """Train one epoch from step ``skip``; returns the mean training loss."""
        _seed_epoch(self.cfg.seed, epoch, self.ctx.rank, self.train_ds.transform)
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        task = (
            bar.add_task(f"epoch {epoch + 1}/{self.cfg.epochs}", total=len(self.loader))
            if bar
            else None
        )
        accum = max(1, self.plan.grad_accum_steps)
        self.epoch_lr = float(self.optimizer.param_groups[0]["lr"])  # the rate the steps use
        n = 0
        for i, batch in enumerate(self.loader):
            n = i + 1
            if i >= skip:
                loss_sum += self._step(batch, i)
            if bar is not None:
                bar.update(
                    task,
                    advance=1,
                    description=f"epoch {epoch + 1}/{self.cfg.epochs} loss {loss_sum / n:.4f}",
                )
            at_boundary = n % accum == 0 and n < len(self.loader)
            if at_boundary and i >= skip and _any(self.ctx, stop.requested):
                self._save_last(epoch, n, loss_sum)
                _barrier(self.ctx)  # no rank exits (and gets rank 0 killed) before the write
                raise TrainingPreempted(self.last_uri, epoch, n)
        self._flush_grads(n)
        self.scheduler.step()
        if bar is not None:
            bar.remove_task(task)
        return loss_sum / max(1, n)

    def _end_epoch(self, epoch: int, train_loss: float, started: float) -> dict[str, float]:
        from minivess.training.distributed import barrier, broadcast_float, mean_float

        train_loss = mean_float(self.ctx, train_loss)
        metrics = {"train_loss": train_loss, "lr": self.epoch_lr}
        done = epoch + 1
        if done % self.cfg.val_interval == 0 or done == self.cfg.epochs:
            dice = float("nan")
            if self.ctx.is_main:
                dice = validate(
                    _unwrap(self.model), self.val_ds, self.plan, self.ctx.device, self.amp
                )["val_dice"]
            dice = broadcast_float(self.ctx, dice)
            metrics["val_dice"] = dice
            if dice > self.best_metric:
                self.best_metric, self.best_epoch = dice, done
                self._save_best(done)
        self.history.append({"epoch": float(done), **metrics})
        self._save_last(done, 0, 0.0)
        barrier(self.ctx)
        self.tracker.log_metrics(metrics, step=done)
        self.durations.append(time.monotonic() - started)
        log.info(epoch_line(done, self.cfg.epochs, metrics, self.durations))
        return metrics

    def run(self) -> TrainSummary:
        self.resumed_from = None
        with sigterm_flag(self.last_uri) as stop:
            with stop.setup("training setup (data gate, model build)"):
                self._build()
                if self.ctx.is_main:
                    ckpt.clean_orphans(self.dir)
                start, skip, loss_sum = self._resume()
                if self.resumed_from is None:
                    self._save_run_files()
            self._log_start()
            self.durations: list[float] = []
            with _progress(self.progress) as bar:
                return self._loop(start, skip, loss_sum, stop, bar)

    def _loop(
        self, start: int, skip: int, loss_sum: float, stop: _StopFlag, bar: Any
    ) -> TrainSummary:
        log.info(
            "%s: from epoch %d step %d of %d; SIGTERM now saves a checkpoint and exits %d",
            TRAINING_STARTED,
            start + 1,
            skip,
            self.cfg.epochs,
            PREEMPTED_EXIT_CODE,
        )
        for epoch in range(start, self.cfg.epochs):
            started = time.monotonic()
            train_loss = self._epoch(epoch, skip, loss_sum, stop, bar)
            skip, loss_sum = 0, 0.0
            self._end_epoch(epoch, train_loss, started)
            if epoch + 1 < self.cfg.epochs and _any(self.ctx, stop.requested):
                raise TrainingPreempted(self.last_uri, epoch + 1, 0)
        summary = self._summary()
        self._log_end(summary)
        return summary

    # -- reporting -----------------------------------------------------------------------
    def _summary(self) -> TrainSummary:
        final = {
            k: v for k, v in (self.history[-1] if self.history else {}).items() if k != "epoch"
        }
        return TrainSummary(
            epochs_completed=len(self.history),
            resumed_from_epoch=self.resumed_from,
            best_metric=self.best_metric,
            best_epoch=self.best_epoch,
            final_metrics=final,
            checkpoint=self.best_uri,
            last_checkpoint=self.last_uri,
            checkpoint_dir=self.dir,
            fold=self.cfg.fold,
            n_folds=self.cfg.n_folds,
            loss=self.cfg.loss.value,
            seed=self.cfg.seed,
            model=self.plan.model,
            plan_hash=self.plan.plan_hash,
            split=self.split,
            world_size=self.ctx.world_size,
            history=self.history,
        )

    def _log_start(self) -> None:
        params = {f"train.{k}": v for k, v in self.cfg.model_dump(mode="json").items()}
        params |= {
            "plan.patch_size": list(self.plan.patch_size),
            "plan.batch_size": self.plan.batch_size,
            "plan.sw_roi": list(self.plan.sw_roi),
            "checkpoint_dir": self.dir,
            "world_size": self.ctx.world_size,
        }
        self.tracker.log_params(params)
        tags = {
            Tag.PLAN_HASH.value: self.plan.plan_hash,
            Tag.MODEL.value: self.plan.model,
            Tag.LOSS.value: self.cfg.loss.value,
            Tag.FOLD.value: str(self.cfg.fold),
        }
        if self.plan.dataset_hash:
            tags[Tag.DATASET_HASH.value] = self.plan.dataset_hash
        self.tracker.set_tags(tags)

    def _log_end(self, summary: TrainSummary) -> None:
        if not self.ctx.is_main:
            return
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp)
            (out / "summary.json").write_text(summary.model_dump_json(indent=2))
            self.tracker.log_artifact(out / "summary.json", str(Path(Artifact.SUMMARY_JSON).parent))
            (out / "split.json").write_text(self.split.model_dump_json(indent=2))
            self.tracker.log_artifact(out / "split.json", "train")
            (out / "plan.json").write_text(self.plan.model_dump_json(indent=2))
            self.tracker.log_artifact(out / "plan.json", str(Path(Artifact.PLAN_JSON).parent))
            png = plot_curves(summary.history, out / "curves.png")
            if png is not None:
                self.tracker.log_artifact(png, "train")


def format_seconds(seconds: float) -> str:
    """``'42 s'``, ``'3m 05s'``, ``'2h 07m'``.

    Example:
        >>> format_seconds(42.4), format_seconds(185), format_seconds(7620)
        ('42 s', '3m 05s', '2h 07m')
    """
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {s % 3600 // 60:02d}m"


def epoch_line(done: int, epochs: int, metrics: dict[str, float], durations: list[float]) -> str:
    """The one log line per epoch: progress, metrics, time per epoch and ETA.

    ``durations`` are this session's epoch times in seconds (a resumed run counts from its
    restart); the ETA is their mean times the epochs left.

    Example:
        >>> epoch_line(2, 10, {"train_loss": 0.5, "val_dice": 0.61}, [12.0, 10.0])
        'epoch 2/10: train_loss 0.5000, val_dice 0.6100 | 10.0 s/epoch, ETA 1m 28s'
    """
    scores = ", ".join(f"{k} {v:.4g}" if k == "lr" else f"{k} {v:.4f}" for k, v in metrics.items())
    left = max(0, epochs - done)
    per_epoch = sum(durations) / len(durations) if durations else 0.0
    eta = "done" if left == 0 else f"ETA {format_seconds(per_epoch * left)}"
    last = durations[-1] if durations else 0.0
    return f"epoch {done}/{epochs}: {scores} | {last:.1f} s/epoch, {eta}"


def cosine_factor(epoch: int, epochs: int) -> float:
    """Factor of the base learning rate in epoch ``epoch`` (0-based) of an ``epochs``-long cosine
    schedule: 1 in the first epoch, falling to 0 after the last.

    Example:
        >>> cosine_factor(0, 3), round(cosine_factor(1, 3), 4), cosine_factor(3, 3)
        (1.0, 0.75, 0.0)
    """
    return 0.5 * (1.0 + math.cos(math.pi * min(epoch, epochs) / epochs))


def _barrier(ctx: DistContext) -> None:
    from minivess.training.distributed import barrier

    barrier(ctx)


def _any(ctx: DistContext, flag: bool) -> bool:
    from minivess.training.distributed import any_rank

    return any_rank(ctx, flag)


@contextmanager
def _progress(enabled: bool) -> Iterator[Any]:
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        transient=True,
    ) as bar:
        yield bar


def plot_curves(history: list[dict[str, float]], path: Path) -> Path | None:
    """Training curves (loss and validation Dice per epoch) as a PNG; None without history."""
    if not history:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    epochs = [h["epoch"] for h in history]
    ax.plot(epochs, [h["train_loss"] for h in history], "o-", label="train loss")
    val = [(h["epoch"], h["val_dice"]) for h in history if "val_dice" in h]
    if val:
        ax.plot(*zip(*val, strict=True), "s-", label="val Dice")
    ax.set_xlabel("epoch")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def train(
    data_dir: Path,
    plan: TrainingPlan,
    cfg: TrainConfig,
    tracker: Tracker | None = None,
    progress: bool = True,
    endpoint_url: str | None = None,
    profile: ModelProfile | None = None,
) -> TrainSummary:
    """Train one (loss, fold) cell on ``data_dir`` with ``plan``; resume if a checkpoint exists.

    Runs the data validation gate, splits deterministically, trains with AdamW + cosine
    schedule (AMP on CUDA when the plan says so), validates with a sliding window (plan's roi and
    overlap), writes ``best.pt`` / ``last.pt`` under ``cfg.checkpoint_dir`` every epoch. Under
    ``torchrun`` only rank 0 validates, logs and writes.

    Raises:
        DataError: no usable volume, or fewer volumes than folds.
        ConfigError: ``checkpoint_dir`` holds another run's checkpoint.
        TrainingPreempted: SIGTERM arrived; the state was saved; rerun to resume.

    ``endpoint_url`` is the S3 endpoint for an ``s3://`` checkpoint dir (the settings'
    ``storage.s3.endpoint_url``; None: AWS).

    ``profile`` is the model profile when it is not a shipped one (``--model path.yaml``);
    default: loaded by ``plan.model``.
    """
    from minivess.training.distributed import setup, teardown

    ctx = setup()
    try:
        run = _Run(
            data_dir, plan, cfg, tracker or NullTracker(), progress, ctx, endpoint_url, profile
        )
        return run.run()
    except RuntimeError as err:  # MONAI wraps a transform's error: report the data error
        cause = _data_error_in(err)
        if cause is None:
            raise
        raise cause from None
    finally:
        teardown(ctx)


def _data_error_in(err: BaseException) -> DataError | None:
    """The :class:`DataError` in ``err``'s cause chain (MONAI's transform wrapping), if any."""
    seen: set[int] = set()
    link: BaseException | None = err
    while link is not None and id(link) not in seen:
        if isinstance(link, DataError):
            return link
        seen.add(id(link))
        link = link.__cause__ or link.__context__
    return None
