"""Measured memory figures of a model on a device: the types, the fit and the store.

The measurement harness (torch, forked children) is :mod:`minivess.planning.harness`, so the
pure planner imports these types without it. ``minivess calibrate --model NAME``:

A few training steps run at 2-3 patch sizes; the peak memory of each is measured
(``torch.cuda.max_memory_allocated`` on GPU, the peak RSS delta on CPU, each CPU size in a fresh
forked process so freed memory of one size does not hide the next). A least-squares line
``peak_mb = base_mb + batch * voxels * bytes_per_voxel / 2**20`` is fitted and stored as JSON
under ``<cache root>/calibration/`` (:func:`minivess.settings.cache_root`), one file per
model and device. The planner prefers it over the profile's static figures and says so.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field

from minivess.config import StrictModel
from minivess.data.schema import Shape3
from minivess.errors import ConfigError
from minivess.settings import cache_root

if TYPE_CHECKING:
    from minivess.planning.profiles import ModelProfile

log = logging.getLogger(__name__)

_MIB = 2**20


class CalibrationPoint(StrictModel):
    """One measurement: patch (x, y, z), network voxels, batch, peak MiB, seconds per step."""

    patch: Shape3
    voxels: int
    batch: int
    peak_mb: float
    step_s: float | None = Field(default=None, description="fastest steady training-step wall time")


class Calibration(StrictModel):
    """Fitted memory model of ``model`` on ``device`` (a ``HardwareBudget.device_key``)."""

    model: str
    device: str
    amp: bool = Field(description="measured under mixed precision")
    base_mb: float
    train_bytes_per_voxel: float
    points: list[CalibrationPoint]
    created: str
    torch_version: str = ""
    step_base_s: float | None = Field(
        default=None, description="step time model: step_s = base + batch*voxels*per_voxel"
    )
    step_s_per_voxel: float | None = None
    device_tflops: float | None = Field(
        default=None,
        description="this device's measured matmul TFLOPS in the training precision (the "
        "figure a step time is scaled by to another GPU's datasheet TFLOPS)",
    )

    def step_s(self, voxels: int, batch: int) -> float | None:
        """Predicted seconds per training step for ``batch`` inputs of ``voxels`` (None: this
        calibration measured memory only)."""
        if self.step_base_s is None or self.step_s_per_voxel is None:
            return None
        return self.step_base_s + batch * voxels * self.step_s_per_voxel

    @property
    def file_name(self) -> str:
        """The file this calibration is stored in (name only)."""
        return calibration_file_name(self.model, self.device)

    def predict_mb(self, voxels: int, batch: int) -> float:
        """Predicted peak MiB for ``batch`` inputs of ``voxels``."""
        return self.base_mb + batch * voxels * self.train_bytes_per_voxel / _MIB


def calibration_file_name(model: str, device: str) -> str:
    """``<model>__<device>.json``."""
    return f"{model}__{device}.json"


def calibration_path(model: str, device: str) -> Path:
    """Where the calibration of ``model`` on ``device`` is stored."""
    return cache_root() / "calibration" / calibration_file_name(model, device)


def save_calibration(cal: Calibration, path: Path | None = None) -> Path:
    """Write ``cal`` as JSON (default: :func:`calibration_path`) and return the path."""
    path = Path(path) if path else calibration_path(cal.model, cal.device)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(cal.model_dump_json(indent=2))
    tmp.replace(path)
    return path


def calibrations_of(model: str) -> list[Calibration]:
    """Every readable stored calibration of ``model`` (any device), newest first."""
    root = cache_root() / "calibration"
    found = []
    for path in sorted(root.glob(calibration_file_name(model, "*"))):
        try:
            found.append(Calibration.model_validate_json(path.read_text()))
        except (OSError, ValueError):
            log.warning("calibration %s is unreadable; ignored (run calibrate again)", path)
    return sorted(found, key=lambda c: c.created, reverse=True)


def load_calibration(model: str, device: str) -> Calibration | None:
    """The stored calibration of ``model`` on ``device``, or None when there is none.

    Raises:
        ConfigError: the file exists but is unreadable (delete it or re-run calibrate).
    """
    path = calibration_path(model, device)
    if not path.is_file():
        return None
    try:
        return Calibration.model_validate_json(path.read_text())
    except ValueError as err:
        raise ConfigError(
            f"{path}: invalid calibration ({str(err).splitlines()[0]}); delete it or run "
            f"'minivess calibrate --model {model}' again."
        ) from None


def fit_memory_model(points: list[CalibrationPoint]) -> tuple[float, float]:
    """Least-squares ``(base_mb, bytes_per_voxel)`` through ``peak_mb`` vs ``batch * voxels``.

    Raises:
        ValueError: fewer than two distinct sizes.
    """
    if len({p.batch * p.voxels for p in points}) < 2:
        raise ValueError("calibration needs at least two different patch sizes")
    base, slope = _fit_line(points, [p.peak_mb for p in points], min_slope=1e-9)
    return base, slope * _MIB


def fit_step_time(points: list[CalibrationPoint]) -> tuple[float, float] | None:
    """Least-squares ``(base_s, s_per_voxel)`` through ``step_s`` vs ``batch * voxels`` (None
    when a point has no step time, or fewer than two sizes were timed)."""
    times = [p.step_s for p in points]
    if any(t is None for t in times) or len({p.batch * p.voxels for p in points}) < 2:
        return None
    return _fit_line(points, [float(t or 0.0) for t in times], min_slope=0.0)


def _fit_line(
    points: list[CalibrationPoint], ys: list[float], min_slope: float
) -> tuple[float, float]:
    """Least squares of ``ys`` against ``batch * voxels``: (intercept >= 0, slope >=
    ``min_slope``); needs two different sizes."""
    xs = [float(p.batch * p.voxels) for p in points]
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = max(sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx, min_slope)
    return max(my - slope * mx, 0.0), slope


def default_patches(profile: ModelProfile) -> list[Shape3]:
    """Three valid patch sizes, small enough for a CPU run of well under a minute."""
    from minivess.planning.topology import round_down

    topo = profile.topology
    if topo.rule == "fixed":
        d = topo.fixed_divisor or 32
        raw: list[Shape3] = [(d, d, d), (2 * d, d, d), (2 * d, 2 * d, d)]
    else:
        raw = [(48, 48, 16), (64, 64, 16), (96, 96, 16)]
    return [(round_down(a, topo), round_down(b, topo), round_down(c, topo)) for a, b, c in raw]
