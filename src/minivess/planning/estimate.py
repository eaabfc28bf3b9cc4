"""Time and cost of a training job before it is launched.

``estimate = steps x step time``: the job's training steps and validation windows come from the
plan, the dataset's volumes and the experiment's loss x fold grid (the same split, batch and
sliding-window rules training uses); the step time is measured by ``minivess calibrate``
(:class:`~minivess.planning.calibration.Calibration`, a line through 2-3 patch sizes) and, for
a GPU other than the calibrated device, its per-voxel part scaled by throughput: the calibrated
device's measured matmul TFLOPS against the GPU's datasheet TFLOPS in ``configs/gpus.yaml``
(FP16 under AMP). The fixed part of a step (the line's intercept: host-side dispatch and the
optimizer's bookkeeping, which run on the CPU whatever the device) is kept as measured.

Known biases, stated with every estimate: datasheet peaks are above what a GPU sustains, so a
GPU estimate scaled from another device errs on the fast side; node provisioning, setup and
data upload are not included; a validation window costs :data:`FORWARD_FRACTION` of a step.

Pure: no I/O and no torch; the caller loads the calibrations and the GPU table.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from minivess.data.schema import Shape3
from minivess.planning.node import accelerator_matches

if TYPE_CHECKING:
    from minivess.planning.calibration import Calibration
    from minivess.planning.plan import TrainingPlan
    from minivess.planning.settings import GpuTable
    from minivess.training.config import TrainConfig

#: A validation window (forward only, batch 1) costs this fraction of a training step at the
#: same patch (backward ~ 2 forwards).
FORWARD_FRACTION = 1 / 3


@dataclass(frozen=True)
class JobSteps:
    """What a job computes, summed over its cells: training steps (each ``plan.batch_size``
    patches) and sliding-window validation windows (one patch each)."""

    cells: int
    epochs: int
    train_steps: int
    val_windows: int

    def describe(self) -> str:
        return (
            f"{self.cells} cell(s) x {self.epochs} epochs: {self.train_steps} training steps, "
            f"{self.val_windows} validation windows"
        )


def sliding_windows(shape: Shape3, roi: Shape3, overlap: float) -> int:
    """Windows MONAI's ``sliding_window_inference`` takes over ``shape`` (its scan interval:
    ``int(roi * (1 - overlap))``, one window on an axis no longer than the roi)."""
    n = 1
    for dim, r in zip(shape, roi, strict=True):
        if dim <= r:
            continue
        step = max(1, int(r * (1 - overlap)))
        n *= math.ceil((dim - r) / step) + 1
    return n


def validations(epochs: int, interval: int) -> int:
    """How often training validates: every ``interval`` epochs, and after the last."""
    return len({e for e in range(1, epochs + 1) if e % interval == 0 or e == epochs})


def job_steps(
    plan: TrainingPlan,
    volumes: Mapping[str, Shape3],
    cells: Sequence[TrainConfig],
    world_size: int = 1,
) -> JobSteps:
    """The steps of training every cell on ``volumes`` (name -> shape), as training splits
    and batches them; ``world_size`` ranks share each epoch's volumes (DDP)."""
    from minivess.training.config import volumes_per_batch
    from minivess.training.splits import kfold_split

    names = sorted(n for n in volumes if n not in set(plan.quarantined_volumes))
    train = val = 0
    for cell in cells:
        split = kfold_split(names, cell.n_folds, cell.fold, cell.seed)
        per_rank = math.ceil(len(split.train) / world_size)
        train += math.ceil(per_rank / volumes_per_batch(plan, cell)) * cell.epochs
        windows = sum(sliding_windows(volumes[v], plan.sw_roi, plan.sw_overlap) for v in split.val)
        val += windows * validations(cell.epochs, cell.val_interval)
    return JobSteps(len(cells), max((c.epochs for c in cells), default=0), train, val)


@dataclass(frozen=True)
class StepTime:
    """Seconds per training step of the plan (its batch) and per validation window (one
    patch, forward only) on one GPU, and where the figures come from."""

    seconds: float
    window_seconds: float
    source: str


def step_time(
    plan: TrainingPlan,
    voxels: int,
    accelerator: str,
    calibrations: Sequence[Calibration],
    table: GpuTable,
) -> StepTime | None:
    """The plan's step time on ``accelerator`` (``"T4:1"``; ``"cpu"``: this machine's CPU) at
    ``voxels`` network voxels.

    A calibration on that GPU is used as measured; else the first calibration that has a
    step time and a throughput figure (GPU ones before CPU), scaled by TFLOPS. None when
    nothing is calibrated or the GPU has no throughput figure.
    """
    timed = [c for c in calibrations if c.step_s(voxels, plan.batch_size) is not None]
    name = accelerator.split(":", 1)[0]

    def scaled(cal: Calibration, scale: float, source: str) -> StepTime:
        # The fixed part of a step (host-side dispatch, the optimizer's bookkeeping) runs on
        # the CPU on any device; only the per-voxel compute scales with throughput.
        base = cal.step_base_s or 0.0
        train = base + ((cal.step_s(voxels, plan.batch_size) or 0.0) - base) * scale
        window = (base + ((cal.step_s(voxels, 1) or 0.0) - base) * scale) * FORWARD_FRACTION
        return StepTime(train, window, source)

    for cal in timed:
        same = (
            cal.device == "cpu"
            if name == "cpu"
            else cal.device.startswith("cuda-")
            and accelerator_matches(name, cal.device.removeprefix("cuda-").replace("-", " "))
        )
        if same:
            return scaled(cal, 1.0, f"calibrated on {cal.device} ({cal.created[:10]})")
    spec = table.gpus.get(name)
    target = spec.tflops(plan.amp) if spec else None
    refs = sorted((c for c in timed if c.device_tflops), key=lambda c: c.device == "cpu")
    if not refs or target is None:
        return None
    ref = refs[0]
    measured = ref.step_s(voxels, plan.batch_size) or 0.0
    precision = "fp16" if plan.amp else "fp32"
    return scaled(
        ref,
        (ref.device_tflops or 0.0) / target,
        f"{measured:.3f} s/step calibrated on {ref.device} x {ref.device_tflops:.3f} TFLOPS "
        f"measured / {target:g} {name} {precision} TFLOPS (configs/gpus.yaml, datasheet)",
    )


@dataclass(frozen=True)
class Estimate:
    """The estimated wall time and cost of a job on one candidate."""

    accelerator: str
    use_spot: bool
    seconds: float
    usd: float | None
    steps: JobSteps
    source: str

    def describe(self) -> str:
        if self.usd is None:
            money = ", no price in the table"
        else:
            money = f", ~${self.usd:.2f}" if self.usd >= 0.01 else ", < $0.01"
        kind = "spot" if self.use_spot else "on-demand"
        return f"{self.accelerator} {kind}: ~{_duration(self.seconds)}{money}"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def estimate(
    steps: JobSteps,
    step: StepTime,
    accelerator: str,
    use_spot: bool,
    table: GpuTable,
    nodes: int = 1,
) -> Estimate:
    """Wall time (training steps x step time + validation windows x window time) and cost
    (hours x on-demand price per GPU x GPUs x nodes, x the spot fraction on spot)."""
    name, _, count = accelerator.partition(":")
    seconds = step.seconds * steps.train_steps + step.window_seconds * steps.val_windows
    spec = table.gpus.get(name)
    usd = None
    if spec is not None and spec.usd_per_hour is not None:
        gpus = (int(count) if count.isdigit() else 1) * nodes
        usd = seconds / 3600 * spec.usd_per_hour * gpus
        usd *= table.spot_price_fraction if use_spot else 1.0
    return Estimate(accelerator, use_spot, seconds, usd, steps, step.source)
