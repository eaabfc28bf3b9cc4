"""Adaptive planning: hardware × dataset × model → a TrainingPlan where every value is explained.

Public entry points:
    * :func:`make_plan` — convenience: profile/detect/load, then plan.
    * :func:`minivess.planning.planner.plan_training` — the pure planner.
    * :mod:`minivess.planning.hardware` — ``detect_hardware()``, ``load_hardware(path)``.
    * :mod:`minivess.planning.profiles` — ``load_model_profile()``, ``list_model_profiles()``.
    * :mod:`minivess.planning.cloud` — cloud GPU candidates, cheapest adequate first.
    * :mod:`minivess.planning.calibration` — measured memory figures per model and device.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from minivess.data.schema import DatasetProfile
    from minivess.planning.hardware import HardwareBudget
    from minivess.planning.plan import TrainingPlan
    from minivess.planning.profiles import ModelProfile

__all__ = ["load_dataset", "make_plan", "resolve_hardware"]

log = logging.getLogger(__name__)


def resolve_hardware(hardware: Path | str | HardwareBudget | None = None) -> HardwareBudget:
    """A budget from an object, a YAML path, a cloud accelerator (``"gpu:L4:1"``), or detection."""
    from minivess.planning.hardware import HardwareBudget, detect_hardware, load_hardware

    if isinstance(hardware, HardwareBudget):
        return hardware
    if hardware is None:
        return detect_hardware()
    text = str(hardware)
    if text.startswith("gpu:"):
        from minivess.planning.cloud import hardware_for_accelerator

        return hardware_for_accelerator(text.removeprefix("gpu:"))
    return load_hardware(Path(text))


def _read_profile_json(path: Path) -> DatasetProfile:
    """A profile written by ``minivess data profile --json``; ConfigError naming the file."""
    import json

    from minivess.config import parse_model
    from minivess.data.schema import DatasetProfile
    from minivess.errors import ConfigError

    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ConfigError(
            f"{path}: not valid JSON ({err}); write a dataset profile with "
            f"'minivess data profile DATA_DIR --json {path}'."
        ) from None
    return parse_model(DatasetProfile, raw, str(path))


def load_dataset(data: Path | str | DatasetProfile) -> DatasetProfile:
    """A profile from a :class:`DatasetProfile`, a profile JSON, or a data folder (profiled)."""
    from minivess.data.schema import DatasetProfile

    if isinstance(data, DatasetProfile):
        return data
    path = Path(data)
    if path.is_file() and path.suffix == ".json":
        return _read_profile_json(path)
    from minivess.data.profiler import profile_dataset

    return profile_dataset(path)


def make_plan(
    data: Path | str | DatasetProfile,
    model: str | Path | ModelProfile,
    *,
    hardware: Path | str | HardwareBudget | None = None,
    overrides: dict[str, Any] | None = None,
    use_calibration: bool = True,
    target_spacing: tuple[float, float, float] | None = None,
) -> TrainingPlan:
    """Plan training of ``model`` on ``data`` for ``hardware``.

    Args:
        data: a data directory (profiled with ``minivess.data.profiler.profile_dataset``), a
            saved profile JSON, or a :class:`DatasetProfile`.
        model: a profile name (``"dynunet"``), a profile YAML path, or a ModelProfile.
        hardware: None (detect this machine), a hardware YAML path, ``"gpu:L4:1"`` (a cloud VM
            with that accelerator, from ``configs/gpus.yaml``), or a HardwareBudget.
        overrides: TrainingPlan field names plus ``allow_padding`` (see ``PlanOverrides``).
        use_calibration: use a stored calibration of this model on this device when present.
        target_spacing: resampling is enabled: plan on the shapes at this spacing.

    Raises:
        ConfigError / PlanError / DataError with a one-line reason.
    """
    from minivess.planning.calibration import load_calibration
    from minivess.planning.planner import plan_training
    from minivess.planning.profiles import ModelProfile, load_model_profile

    dataset = load_dataset(data)
    profile = model if isinstance(model, ModelProfile) else load_model_profile(model)
    hw = resolve_hardware(hardware)
    cal = load_calibration(profile.name, hw.device_key) if use_calibration else None
    if cal is not None:
        log.info("using calibration %s", cal.file_name)
    return plan_training(
        hw, dataset, profile, overrides=overrides, calibration=cal, target_spacing=target_spacing
    )
