"""`launch --dry-run` estimates time and cost per candidate from a stored calibration, and
says how to get one when there is none."""

from __future__ import annotations

from pathlib import Path

import pytest

from minivess.planning.calibration import Calibration, CalibrationPoint, save_calibration
from minivess.planning.estimate import JobSteps
from minivess.planning.settings import load_gpu_table


def _cpu_calibration() -> Calibration:
    points = [
        CalibrationPoint(patch=(s, s, 8), voxels=s * s * 8, batch=1, peak_mb=100.0,
                         step_s=0.02 + s * s * 8 * 1e-6)
        for s in (16, 32)
    ]  # fmt: skip
    return Calibration(
        model="dynunet", device="cpu", amp=False, base_mb=100.0, train_bytes_per_voxel=1.0,
        points=points, created="2026-12-01T00:00:00Z", step_base_s=0.02,
        step_s_per_voxel=1e-6, device_tflops=0.1,
    )  # fmt: skip


def test_estimates_per_candidate_and_spot_mode_from_the_stored_calibration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, plan_with
) -> None:
    from minivess.launch.launcher import estimates_for

    monkeypatch.setenv("MINIVESS_CACHE_DIR", str(tmp_path / "cache"))
    plan = plan_with(accelerators=["T4:1", "L4:1"])
    job = JobSteps(cells=2, epochs=5, train_steps=100, val_windows=40)
    none, why = estimates_for(plan, job, ["T4:1", "L4:1"], [True, False])
    assert none == [] and "minivess calibrate --model dynunet" in why

    save_calibration(_cpu_calibration())
    found, why = estimates_for(plan, job, ["T4:1", "L4:1"], [True, False])
    assert why == ""
    assert [(e.accelerator, e.use_spot) for e in found] == [
        ("T4:1", True), ("T4:1", False), ("L4:1", True), ("L4:1", False)
    ]  # fmt: skip
    table = load_gpu_table()
    t4, l4 = found[1], found[3]
    # the plan uses AMP: fp16 throughput; the compute part scales by the ratio, the fixed
    # part of a step (0.02 s) stays
    t4_compute, l4_compute = (e.seconds - 0.02 * 100 - 0.02 * 40 / 3 for e in (t4, l4))
    assert t4_compute / l4_compute == pytest.approx(
        (table.gpus["L4"].tflops_fp16 or 0) / (table.gpus["T4"].tflops_fp16 or 1)
    )
    assert found[0].usd == pytest.approx((t4.usd or 0) * table.spot_price_fraction)
    assert all(e.steps is job for e in found)


def test_the_rehearsal_report_sets_the_estimate_against_the_measured_run() -> None:
    from minivess.launch.rehearse import estimate_against
    from minivess.planning.estimate import Estimate

    job = JobSteps(cells=1, epochs=2, train_steps=4, val_windows=14)
    here = Estimate("cpu", False, 12.0, None, job, "calibrated on cpu (2026-12-01)")
    report = estimate_against([here], "", 30.0)
    assert (report["estimated_s"], report["measured_s"]) == (12.0, 30.0)
    assert report["measured_over_estimated"] == 2.5 and report["device"] == "cpu"
    none = estimate_against([], "no step time is calibrated for 'dynunet': ...", 30.0)
    assert none["estimated_s"] is None and "'dynunet'" in none["why"]
