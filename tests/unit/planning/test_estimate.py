"""Time and cost before launch: the job's steps as training takes them, a calibrated step
time scaled by throughput, and prices from the GPU table."""

from __future__ import annotations

import math

import pytest

from minivess.planning.calibration import Calibration, CalibrationPoint, fit_step_time
from minivess.planning.estimate import (
    FORWARD_FRACTION,
    JobSteps,
    estimate,
    job_steps,
    sliding_windows,
    step_time,
    validations,
)
from minivess.planning.settings import load_gpu_table
from minivess.training.config import TrainConfig
from minivess.training.splits import kfold_split
from tests.fixtures.tiny import TINY_Z, tiny_plan

TABLE = load_gpu_table()
VOLUMES = {name: (32, 32, z) for name, z in TINY_Z.items()}


@pytest.mark.parametrize(
    ("shape", "roi", "overlap"),
    [((32, 32, 12), (16, 16, 4), 0.25), ((512, 512, 5), (96, 96, 5), 0.5),
     ((100, 37, 9), (64, 64, 8), 0.25), ((16, 16, 4), (16, 16, 4), 0.9)],
)  # fmt: skip
def test_window_count_is_monais(shape, roi, overlap) -> None:
    """The same count as MONAI's own sliding-window scan (its interval and slice helpers)."""
    from monai.data.utils import dense_patch_slices
    from monai.inferers.utils import _get_scan_interval

    padded = tuple(max(s, r) for s, r in zip(shape, roi, strict=True))  # as MONAI pads first
    interval = _get_scan_interval(padded, roi, 3, (overlap,) * 3)
    assert sliding_windows(shape, roi, overlap) == len(dense_patch_slices(padded, roi, interval))


def test_validation_count_follows_the_interval_and_the_last_epoch() -> None:
    assert validations(40, 1) == 40
    assert validations(10, 3) == 4  # epochs 3, 6, 9 and the last
    assert validations(2, 5) == 1


def test_job_steps_are_the_splits_batches_and_windows() -> None:
    plan = tiny_plan(quarantined_volumes=["mv06"])
    cells = [TrainConfig(fold=f, n_folds=2, epochs=3, seed=1) for f in (0, 1)]
    job = job_steps(plan, VOLUMES, cells)
    names = sorted(set(VOLUMES) - {"mv06"})
    want_train = want_val = 0
    for cell in cells:
        split = kfold_split(names, 2, cell.fold, 1)
        want_train += math.ceil(len(split.train) / 1) * 3  # batch 2 = one volume of 2 patches
        want_val += 3 * sum(sliding_windows(VOLUMES[v], plan.sw_roi, 0.25) for v in split.val)
    assert (job.cells, job.epochs, job.train_steps, job.val_windows) == (
        2, 3, want_train, want_val
    )  # fmt: skip
    # Two DDP ranks share each epoch's volumes: half the steps each, rounded up.
    assert job_steps(plan, VOLUMES, cells, world_size=2).train_steps == sum(
        math.ceil(math.ceil(len(kfold_split(names, 2, c.fold, 1).train) / 2)) * 3 for c in cells
    )


def _calibration(device: str, base: float, per_voxel: float, tflops: float | None) -> Calibration:
    points = [
        CalibrationPoint(patch=(s, s, 8), voxels=s * s * 8, batch=1, peak_mb=100.0,
                         step_s=base + s * s * 8 * per_voxel)
        for s in (16, 32, 48)
    ]  # fmt: skip
    fit = fit_step_time(points)
    assert fit is not None
    return Calibration(
        model="dynunet", device=device, amp=False, base_mb=100.0, train_bytes_per_voxel=1.0,
        points=points, created="2026-12-01T00:00:00Z", step_base_s=fit[0],
        step_s_per_voxel=fit[1], device_tflops=tflops,
    )  # fmt: skip


def test_step_time_is_measured_on_the_same_gpu_else_scaled_by_throughput() -> None:
    plan = tiny_plan(amp=True, batch_size=4)
    voxels = 16 * 16 * 4
    cpu = _calibration("cpu", 0.05, 2e-6, tflops=0.1)
    assert fit_step_time(cpu.points) == pytest.approx((0.05, 2e-6))
    t4 = _calibration("cuda-tesla-t4", 0.01, 1e-7, tflops=40.0)
    # On a T4 with a T4 calibration: as measured (an NVML name, matched to SkyPilot's).
    on_t4 = step_time(plan, voxels, "T4:1", [cpu, t4], TABLE)
    assert on_t4 is not None and on_t4.seconds == pytest.approx(0.01 + 4 * voxels * 1e-7)
    assert on_t4.window_seconds == pytest.approx((0.01 + voxels * 1e-7) * FORWARD_FRACTION)
    # On an L4: the GPU calibration (before the CPU one) scaled by 40 / L4's fp16 TFLOPS.
    on_l4 = step_time(plan, voxels, "L4:1", [cpu, t4], TABLE)
    l4 = TABLE.gpus["L4"].tflops_fp16
    assert l4 and on_l4 is not None
    assert on_l4.seconds == pytest.approx(0.01 + 4 * voxels * 1e-7 * 40.0 / l4)  # base kept
    assert "configs/gpus.yaml" in on_l4.source and "cuda-tesla-t4" in on_l4.source
    # Only the CPU calibrated: scaled from its measured TFLOPS; fp32 without AMP.
    on_l4_cpu = step_time(tiny_plan(batch_size=4), voxels, "L4:1", [cpu], TABLE)
    want = 0.05 + 4 * voxels * 2e-6 * 0.1 / (TABLE.gpus["L4"].tflops_fp32 or 1)
    assert on_l4_cpu is not None and on_l4_cpu.seconds == pytest.approx(want)
    here = step_time(plan, voxels, "cpu", [cpu], TABLE)
    assert here is not None and here.seconds == pytest.approx(0.05 + 4 * voxels * 2e-6)
    # Nothing calibrated with a step time (an old, memory-only file): no estimate.
    old = cpu.model_copy(update={"step_base_s": None, "step_s_per_voxel": None})
    assert step_time(plan, voxels, "L4:1", [old], TABLE) is None
    assert step_time(plan, voxels, "NOPE:1", [cpu], TABLE) is None


def test_cost_is_hours_times_price_gpus_and_nodes_and_the_spot_fraction() -> None:
    from minivess.planning.estimate import StepTime

    job = JobSteps(cells=1, epochs=10, train_steps=3600, val_windows=300)
    step = StepTime(seconds=1.0, window_seconds=2.0, source="test")
    od = estimate(job, step, "A100:2", use_spot=False, table=TABLE, nodes=2)
    assert od.seconds == pytest.approx(3600 + 600)
    price = TABLE.gpus["A100"].usd_per_hour or 0
    assert od.usd == pytest.approx(4200 / 3600 * price * 2 * 2)
    spot = estimate(job, step, "A100:2", use_spot=True, table=TABLE, nodes=2)
    assert spot.usd == pytest.approx((od.usd or 0) * TABLE.spot_price_fraction)
    assert "A100:2 spot: ~70 min" in spot.describe()
