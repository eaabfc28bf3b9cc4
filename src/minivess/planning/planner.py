"""The planner: HardwareBudget × DatasetProfile × ModelProfile × overrides → TrainingPlan.

A pure function made of small ``determine_*`` steps (nnU-Net's experiment planner style). Each
step returns its value and the reason, which becomes a :class:`~minivess.planning.plan.Decision`,
so the plan explains itself. Rules (docs/planner.md):

* **Tier** from the seed's table (``configs/planner.yaml``).
* **Fit:** the patch fits every volume on every axis (the smallest volume bounds it), so no
  volume is padded by default. An override larger than a volume pads only those volumes, each
  listed in ``padded_volumes`` and in the decisions; with ``allow_padding: false`` it is refused.
* **Divisibility per axis** from the model's topology: a thin axis gets stride 1 at the deep
  levels, so Z=5 data gets a valid patch.
* **Memory:** the estimate stays within 80% of the VRAM (GPU) or of the RAM left after the
  cache (CPU); otherwise the patch shrinks along the axis with the most room, then the batch.
* **Cache rate:** at most 60% of free RAM, never more than the data needs.
"""

from __future__ import annotations

import logging
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field

from minivess.config import StrictModel, parse_model
from minivess.data.schema import DatasetProfile, Shape3, Spacing3, VolumeStats
from minivess.errors import ConfigError, PlanError
from minivess.keys import PatchPolicy, SmallVolumes, Source, Tier
from minivess.planning.calibration import Calibration
from minivess.planning.cloud import gpu_candidates, parse_accelerator
from minivess.planning.hardware import HardwareBudget
from minivess.planning.memory import feature_voxels, inference_mb, memory_model, training_mb
from minivess.planning.plan import Decision, PlanNetwork, TrainingPlan
from minivess.planning.profiles import MemorySpec, ModelProfile, TopologySpec
from minivess.planning.settings import PlannerSettings, TierSpec, load_planner_settings
from minivess.planning.topology import (
    divisors_of,
    is_valid_size,
    kernels_for,
    nearest_valid,
    network_shape,
    patch_strides,
    round_down_shape,
)

_AXES = ("x", "y", "z")
log = logging.getLogger(__name__)


class PlanOverrides(StrictModel):
    """What a researcher may fix by hand (``--set key=value``, ``--overrides FILE``, ``plan:``).

    Most fields are :class:`TrainingPlan` fields; ``small_volumes`` and ``allow_padding`` steer
    the padding. None means "automatic" (``configs/planner.yaml``).
    """

    tier: Tier | None = None
    patch_size: Shape3 | None = None
    batch_size: int | None = Field(default=None, ge=1)
    cache_rate: float | None = Field(default=None, ge=0, le=1)
    num_workers: int | None = Field(default=None, ge=0)
    amp: bool | None = None
    grad_accum_steps: int | None = Field(default=None, ge=1)
    sw_roi: Shape3 | None = None
    sw_overlap: float | None = Field(default=None, ge=0, lt=1)
    sw_batch_size: int | None = Field(default=None, ge=1)
    accelerators: list[str] | None = None
    patch_policy: PatchPolicy | None = Field(
        default=None, description="min_volume (seed D2 default) or median_pad (nnU-Net)"
    )
    small_volumes: SmallVolumes | None = Field(
        default=None, description="volumes below the network's minimum: quarantine or pad"
    )
    allow_padding: bool = Field(
        default=True, description="pad volumes smaller than the patch (each is listed)"
    )

    def source(self, name: str) -> Source:
        """``override`` when the researcher set ``name``, else ``auto``."""
        return Source.OVERRIDE if getattr(self, name) is not None else Source.AUTO


def parse_overrides(
    overrides: dict[str, Any] | PlanOverrides | None, origin: str = "plan overrides"
) -> PlanOverrides:
    """Validate an overrides mapping; unknown keys raise ConfigError with "did you mean"."""
    if isinstance(overrides, PlanOverrides):
        return overrides
    return parse_model(PlanOverrides, overrides or {}, origin)


def load_overrides(path: Path | None = None, set_items: list[str] | None = None) -> dict[str, Any]:
    """Overrides from a YAML mapping file and ``--set key=value`` items (``--set`` wins).

    The file is either the mapping itself or an experiment YAML holding it under ``plan:``.
    Keys are validated (unknown key -> ConfigError with "did you mean").
    """
    from minivess.config import deep_merge, parse_set_overrides, read_yaml

    data: dict[str, Any] = {}
    if path is not None:
        raw = read_yaml(Path(path))
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a mapping of plan fields, e.g. 'batch_size: 2'")
        data = raw["plan"] if isinstance(raw.get("plan"), dict) else raw
        parse_model(PlanOverrides, data, str(path))
    merged = deep_merge(data, parse_set_overrides(set_items))
    parse_model(PlanOverrides, merged, "--set" if set_items else str(path or "overrides"))
    return merged


# --------------------------------------------------------------------------------------------
# determine_* steps
# --------------------------------------------------------------------------------------------


def determine_tier(hw: HardwareBudget, settings: PlannerSettings) -> tuple[Tier, str]:
    """The seed's tier from the GPU count and nominal VRAM (GB)."""
    if not hw.has_gpu:
        return Tier.CPU, "no GPU detected"
    nominal = round(hw.gpu_vram_mb / 1024)
    name = hw.gpu_name or "GPU"
    if nominal < settings.cpu_fallback_vram_gb:
        return Tier.CPU, (
            f"WARNING: {name} has {nominal} GB < {settings.cpu_fallback_vram_gb:g} GB; "
            "training on CPU"
        )
    if hw.gpu_count > 1:
        return Tier.CLOUD_MULTI, f"{hw.gpu_count} GPUs ({name}, {nominal} GB each)"
    singles = sorted(
        (t for t in settings.tiers if t not in (Tier.CPU, Tier.CLOUD_MULTI)),
        key=lambda t: -settings.tiers[t].min_vram_gb,
    )
    for tier in singles:
        if nominal >= settings.tiers[tier].min_vram_gb:
            return tier, f"one {name} with {nominal} GB >= {settings.tiers[tier].min_vram_gb:g} GB"
    return Tier.CPU, f"{name} with {nominal} GB is below every GPU tier"


def determine_cache_rate(
    hw: HardwareBudget, dataset: DatasetProfile, settings: PlannerSettings
) -> tuple[float, str]:
    """Fraction of volumes to cache: at most ``cache_ram_fraction`` of free RAM."""
    need = dataset.total_size_gb * settings.cache_bytes_factor
    room = settings.cache_ram_fraction * hw.ram_available_gb
    if need <= room:
        return 1.0, (
            f"the data needs {need:.2f} GB (image+label float32) <= "
            f"{settings.cache_ram_fraction:.0%} of {hw.ram_available_gb:.1f} GB free RAM"
        )
    rate = math.floor(room / need * 100) / 100
    return rate, (
        f"the data needs {need:.2f} GB; {settings.cache_ram_fraction:.0%} of "
        f"{hw.ram_available_gb:.1f} GB free RAM holds {rate:.0%} of it"
    )


def determine_memory_budget(
    hw: HardwareBudget, gpu: bool, cache_gb: float, settings: PlannerSettings
) -> tuple[float, str]:
    """MiB one training step may use: a fraction of the VRAM, or of the RAM left after the cache."""
    if gpu:
        budget = settings.vram_budget_fraction * hw.gpu_vram_mb
        return budget, f"{settings.vram_budget_fraction:.0%} of {hw.gpu_vram_mb} MiB VRAM"
    free = max(hw.ram_available_gb - cache_gb, 0.0)
    budget = settings.ram_budget_fraction * free * 1024
    return budget, (
        f"{settings.ram_budget_fraction:.0%} of {free:.1f} GB free RAM left after "
        f"{cache_gb:.1f} GB of cache"
    )


def _grow_free_axes(
    capped: list[int], target: Shape3, limits: list[int], cost: list[int] | None = None
) -> list[int]:
    """Scale the axes that the data did not cap so the patch keeps the target's voxel count.

    ``limits`` is the per-axis ceiling (model max, smallest volume). Axes that hit their ceiling
    while growing are fixed there and the rest is redistributed (at most three rounds).
    ``cost`` is what each capped axis costs the network (an internally padded axis costs its
    padded size), default ``capped``.
    """
    cost = cost or capped
    goal = target[0] * target[1] * target[2]
    out = list(capped)
    free = [a for a in range(3) if capped[a] == target[a] and capped[a] < limits[a]]
    for _ in range(3):
        if not free or out[0] * out[1] * out[2] >= goal:
            break
        fixed = math.prod(max(out[a], cost[a]) for a in range(3) if a not in free)
        scale = (goal / (fixed * math.prod(out[a] for a in free))) ** (1 / len(free))
        if scale <= 1.0:
            break  # growing only: never below what the data allows
        for a in free:
            out[a] = min(limits[a], int(out[a] * scale))
        free = [a for a in free if out[a] < limits[a]]
    return out


def fit_patch(
    target: Shape3,
    dataset: DatasetProfile,
    model: ModelProfile,
    keep_voxels: bool = False,
    *,
    bound: Shape3 | None = None,
    spacing: Spacing3 | None = None,
) -> tuple[Shape3, str]:
    """Largest valid patch <= target, the model's max and the data ``bound``, per axis.

    Args:
        target: the tier's patch (x, y, z) voxels.
        keep_voxels: when the data caps an axis (Z=5), grow the other axes (within the model max
            and the bound) so the patch keeps the target's voxel count.
        bound: what the data allows per axis; default the smallest volume (policy min_volume).
        spacing: voxel spacing for a topology with spacing-aware pooling.

    Raises:
        PlanError: an axis has no valid size (the data is thinner than the model allows).
    """
    topo = model.topology
    bound = bound or dataset.min_shape
    limits = [min(model.limits.max_patch[a], bound[a]) for a in range(3)]
    capped = [min(target[a], limits[a]) for a in range(3)]
    cost = list(network_shape((capped[0], capped[1], capped[2]), topo))
    grown = _grow_free_axes(capped, target, limits, cost) if keep_voxels else capped
    out = round_down_shape((grown[0], grown[1], grown[2]), topo, spacing)
    for a in range(3):
        if out[a] < 1:
            raise PlanError(
                f"model '{model.name}' cannot fit axis {_AXES[a]} of the smallest volume "
                f"({bound[a]} voxels): its topology needs multiples of "
                f"{topo.fixed_divisor}. Override patch_size (volumes get padded) or pick another "
                "model."
            )
    patch_strides(out, topo, spacing)  # raises PlanError when the network cannot be built
    reason = (
        f"target {tuple(target)} capped by the data bound {tuple(bound)} and "
        f"the model max {tuple(model.limits.max_patch)} -> {tuple(capped)}"
    )
    if grown != capped:
        reason += f", uncapped axes grown to keep the target's voxels -> {tuple(grown)}"
    return out, reason + f", rounded down per axis to the topology -> {out}"


def _can_shrink(
    patch: Shape3, axis: int, floor: Shape3, topo: TopologySpec, spacing: Spacing3 | None = None
) -> Shape3 | None:
    """The next smaller valid patch on ``axis`` that keeps the network buildable, or None."""
    cand = list(patch)
    cand[axis] -= 1
    smaller = round_down_shape((cand[0], cand[1], cand[2]), topo, spacing)
    if any(smaller[a] < max(floor[a], 1) for a in range(3)):
        return None
    if _voxels(smaller, topo) >= _voxels(patch, topo):
        return None  # an internally padded axis: shrinking it saves nothing
    try:
        patch_strides(smaller, topo, spacing)
    except PlanError:
        return None
    return smaller


def step_mb(
    patch: Shape3,
    batch: int,
    model: ModelProfile,
    mem: MemorySpec,
    amp: bool,
    spacing: Spacing3 | None = None,
) -> float:
    """Estimated MiB of one training step at ``patch`` and ``batch`` (see ``memory``)."""
    topo = model.topology
    shape = network_shape(patch, topo)
    features = None
    if mem.bytes_per_feature_voxel is not None:
        features = feature_voxels(shape, patch_strides(patch, topo, spacing), topo, mem)
    return training_mb(mem, shape[0] * shape[1] * shape[2], batch, amp, features)


@dataclass(frozen=True)
class StepBudget:
    """What a training step's memory estimate depends on, and the MiB it must stay within.

    Shared by :func:`fit_memory` (shrink until within ``budget_mb``) and :func:`grow_batch`
    (grow while within it), so both price a step the same way.
    """

    model: ModelProfile
    mem: MemorySpec
    amp: bool
    budget_mb: float
    spacing: Spacing3 | None = None

    def mb(self, patch: Shape3, batch: int) -> float:
        """:func:`step_mb` of ``patch`` and ``batch`` under this model, memory spec and AMP."""
        return step_mb(patch, batch, self.model, self.mem, self.amp, self.spacing)


def _voxels(patch: Shape3, topo: TopologySpec) -> int:
    shape = network_shape(patch, topo)
    return shape[0] * shape[1] * shape[2]


def determine_sw_batch(
    ov: PlanOverrides, sw_roi: Shape3, batch: int, step: StepBudget, cap: int
) -> tuple[int, str]:
    """Windows per forward pass in sliding-window inference, and why.

    Inference keeps no activations for a backward pass, so the training batch always fits; it
    grows by doubling up to ``cap`` (``sw_batch_max``) while :func:`inference_mb` of that many
    windows stays within the step's budget.
    """
    voxels = _voxels(sw_roi, step.model.topology)
    size = max(1, batch)
    while size * 2 <= cap and inference_mb(step.mem, voxels, step.amp, size * 2) <= step.budget_mb:
        size *= 2
    if ov.sw_batch_size is not None:
        return ov.sw_batch_size, f"auto would use {size}"
    if size == max(1, batch):
        why = f"the training batch ({batch})"
        if size < cap:
            why += f"; {size * 2} windows would not fit the {step.budget_mb:.0f} MiB budget"
        return size, why
    mb = inference_mb(step.mem, voxels, step.amp, size)
    return size, (
        f"{mb:.0f} MiB for {size} windows <= budget {step.budget_mb:.0f} MiB "
        f"(at most sw_batch_max={cap}; inference keeps no activations for backward)"
    )


def fit_memory(
    patch: Shape3,
    batch: int,
    step: StepBudget,
    *,
    patch_fixed: bool,
    batch_fixed: bool,
    advice: str = "Use a bigger GPU or a lighter model.",
) -> tuple[Shape3, int, float, list[str]]:
    """Shrink the patch (axis with the most room first), then the batch, until within budget.

    "Room" of an axis is ``patch / min_patch`` (how many times it is above the model's floor);
    each step moves that axis to its next smaller valid size.

    Returns:
        (patch, batch, estimate MiB, notes describing each shrink).

    Raises:
        PlanError: nothing left to shrink and the estimate still exceeds the budget.
    """
    model, budget_mb, spacing = step.model, step.budget_mb, step.spacing
    topo = model.topology
    floor = tuple(min(model.limits.min_patch[a], patch[a]) for a in range(3))
    floor3: Shape3 = (floor[0], floor[1], floor[2])
    notes: list[str] = []
    est = step.mb(patch, batch)
    start = (patch, batch)
    while est > budget_mb:
        options = (
            []
            if patch_fixed
            else [
                (patch[a] / max(floor3[a], 1), patch[a], -a, a)
                for a in range(3)
                if _can_shrink(patch, a, floor3, topo, spacing)
            ]
        )
        if options:
            axis = max(options)[3]
            smaller = _can_shrink(patch, axis, floor3, topo, spacing)
            assert smaller is not None
            patch = smaller
        elif not batch_fixed and batch > 1:
            batch -= 1
        else:
            fixed = [n for n, f in (("patch_size", patch_fixed), ("batch_size", batch_fixed)) if f]
            if fixed:
                raise PlanError(
                    f"model '{model.name}' needs {est:.0f} MiB at patch {patch}, batch {batch} "
                    f"(fixed by override: {', '.join(fixed)}), over the budget of "
                    f"{budget_mb:.0f} MiB: lower the override or use a bigger device."
                )
            raise PlanError(
                f"model '{model.name}' needs {est:.0f} MiB even at its smallest patch {patch} "
                f"and batch {batch}, over the budget of {budget_mb:.0f} MiB: the device is too "
                f"small for this model at any patch. {advice}"
            )
        est = step.mb(patch, batch)
    if (patch, batch) != start:
        notes.append(
            f"shrunk from patch {start[0]} batch {start[1]} to patch {patch} batch {batch} "
            f"to fit {budget_mb:.0f} MiB"
        )
    return patch, batch, est, notes


def validate_patch_override(
    patch: Shape3, model: ModelProfile, spacing: Spacing3 | None = None
) -> None:
    """An overridden patch must be within the model's maximum and suit its topology.

    Raises:
        ConfigError: naming the axis and the maximum, or the nearest valid sizes.
    """
    top = model.limits.max_patch
    for a in range(3):
        if patch[a] > top[a]:
            raise ConfigError(
                f"patch_size {tuple(patch)}: axis {_AXES[a]}={patch[a]} is above the maximum "
                f"{top[a]} of '{model.name}' (limits.max_patch {tuple(top)}); use at most "
                f"{top[a]}."
            )
    topo = model.topology
    if topo.pooling == "spacing" and spacing is not None:
        below = round_down_shape(patch, topo, spacing)
        for a in range(3):
            if below[a] != patch[a]:
                raise ConfigError(
                    f"patch_size {tuple(patch)}: axis {_AXES[a]}={patch[a]} does not suit the "
                    f"topology of '{model.name}' at spacing {tuple(spacing)}; use "
                    f"{below[a]} (patch {tuple(below)} is valid)."
                )
    else:
        for a in range(3):
            if not is_valid_size(patch[a], topo):
                lo, hi = nearest_valid(patch[a], topo)
                raise ConfigError(
                    f"patch_size {tuple(patch)}: axis {_AXES[a]}={patch[a]} does not suit the "
                    f"topology of '{model.name}'; use {lo or hi}"
                    + (f" or {hi}" if lo else "")
                    + "."
                )
    if max(patch) > 0:
        patch_strides(patch, topo, spacing)


def _pad_decision(v: VolumeStats, patch: Shape3, source: Source, why: str) -> Decision:
    to = tuple(max(v.shape[a], patch[a]) for a in range(3))
    pad = tuple(to[a] - v.shape[a] for a in range(3))
    return Decision(
        name=f"padding:{v.name}",
        value={"shape": list(v.shape), "padded_to": list(to), "pad_voxels": list(pad)},
        reason=f"{v.name} {tuple(v.shape)} is smaller than the patch {patch} ({why}); "
        f"zero-padded by {pad} voxels to {to} when loaded",
        source=source,
    )


def padded_volumes(
    patch: Shape3,
    dataset: DatasetProfile,
    source: Source = Source.OVERRIDE,
    why: str = "overridden patch",
) -> tuple[list[str], list[Decision]]:
    """Volumes smaller than ``patch`` on some axis, with one decision each (shape, padding)."""
    names: list[str] = []
    decisions: list[Decision] = []
    for v in dataset.volumes:
        if any(v.shape[a] < patch[a] for a in range(3)):
            names.append(v.name)
            decisions.append(_pad_decision(v, patch, source, why))
    return names, decisions


def describe_hardware(hw: HardwareBudget) -> str:
    """One line summarising the budget the plan is made for."""
    gpus = f"{hw.gpu_count}x {hw.gpu_name} ({hw.gpu_vram_mb} MiB each)" if hw.has_gpu else "no GPU"
    return (
        f"{hw.cpu_cores} CPU cores, {hw.ram_available_gb:.1f} of {hw.ram_total_gb:.1f} GB RAM "
        f"free (swap {hw.swap_total_gb:.1f} GB is never planned on), {gpus}, "
        f"environment {hw.environment}"
    )


def determine_amp(ov: PlanOverrides, model: ModelProfile, gpu: bool) -> tuple[bool, str]:
    """Mixed precision: on a GPU when the model supports it (or as overridden).

    ``amp=true`` for a CPU run is a logged decision (fp32), never silently dropped.
    """
    if ov.amp is not None:
        if ov.amp and not model.supports_amp:
            raise PlanError(f"amp=true: model '{model.name}' does not support mixed precision")
        if ov.amp and not gpu:
            msg = "amp=true asked for, but training runs on the CPU: fp32 (CUDA AMP only)"
            log.warning("planner: %s", msg)
            return False, msg
        return ov.amp, ""
    if gpu and model.supports_amp:
        return True, "GPU and the model supports mixed precision"
    return False, "the model does not support mixed precision" if gpu else "CPU training: fp32"


def check_padding(
    patch: Shape3,
    dataset: DatasetProfile,
    ov: PlanOverrides,
    policy: PatchPolicy = PatchPolicy.MIN_VOLUME,
) -> tuple[list[str], list[Decision]]:
    """Volumes the patch pads (each listed with its padding); refused when ``allow_padding`` is
    false. ``dataset`` holds the volumes that are trained on (quarantined ones removed)."""
    if ov.patch_size is not None:
        source, why = Source.OVERRIDE, "overridden patch"
    else:
        source, why = Source.AUTO, f"patch policy {policy.value}"
    padded, decisions = padded_volumes(patch, dataset, source, why)
    if not any(patch[a] > dataset.min_shape[a] for a in range(3)):
        return [], []
    if not ov.allow_padding:
        first = padded[:3] or ["the smallest volume"]
        more = f" and {len(padded) - 3} more" if len(padded) > 3 else ""
        raise PlanError(
            f"patch_size {patch} is larger than volume {', '.join(first)}{more} "
            f"(smallest shape {tuple(dataset.min_shape)}) and allow_padding is false: "
            "use a smaller patch_size or set allow_padding=true"
        )
    if not dataset.volumes:
        decisions.append(
            Decision(
                name="padding",
                value=list(dataset.min_shape),
                source=source,
                reason="the profile has no per-volume stats; volumes smaller than the patch "
                "are padded",
            )
        )
    if padded:
        log.warning(
            "planner: %d volume(s) are zero-padded up to the patch %s (%s): %s",
            len(padded),
            patch,
            why,
            ", ".join(padded[:10]) + (" ..." if len(padded) > 10 else ""),
        )
    return padded, decisions


def determine_sw_roi(ov: PlanOverrides, patch: Shape3, divisors: Shape3) -> Shape3:
    """Sliding-window roi: the training patch, or an override that suits the network.

    Raises:
        ConfigError: an overridden roi axis is not a multiple of the network's divisor.
    """
    if ov.sw_roi is None:
        return patch
    for a in range(3):
        if ov.sw_roi[a] % divisors[a]:
            raise ConfigError(
                f"sw_roi {tuple(ov.sw_roi)}: axis {_AXES[a]}={ov.sw_roi[a]} is not a multiple "
                f"of {divisors[a]} (the network's divisor on that axis)"
            )
    return (ov.sw_roi[0], ov.sw_roi[1], ov.sw_roi[2])


def determine_accelerators(
    ov: PlanOverrides,
    model: ModelProfile,
    patch: Shape3,
    batch: int,
    count: int,
    settings: PlannerSettings,
) -> tuple[list[str], str]:
    """Cloud GPU candidates for this patch and batch, cheapest first (or as overridden)."""
    if ov.accelerators is not None:
        for acc in ov.accelerators:
            parse_accelerator(acc)
        return list(ov.accelerators), ""
    cands = gpu_candidates(model, patch, batch, settings, count=count, amp=model.supports_amp)
    if not cands:
        return [], "no GPU in configs/gpus.yaml holds this patch and batch"
    return [c.accelerator for c in cands], (
        f"cloud GPUs whose {settings.vram_budget_fraction:.0%} VRAM holds this patch and batch "
        f"({cands[0].estimate_mb:.0f} MiB, static vram model), cheapest first (configs/gpus.yaml)"
    )


def determine_spacing(dataset: DatasetProfile) -> tuple[Spacing3, str]:
    """The spacing the topology is planned at: the per-axis median over the volumes."""
    if dataset.volumes:
        sp = [statistics.median(v.spacing[a] for v in dataset.volumes) for a in range(3)]
        how = f"per-axis median spacing of {len(dataset.volumes)} volumes"
    else:
        lo, hi = dataset.spacing_range
        sp = [math.sqrt(lo[a] * hi[a]) for a in range(3)]
        how = "geometric mean of the profile's spacing range (no per-volume stats)"
    out: Spacing3 = (round(sp[0], 4), round(sp[1], 4), round(sp[2], 4))
    return out, how


def network_floor(model: ModelProfile, dataset: DatasetProfile) -> Shape3:
    """The smallest patch worth training this model on, per axis, for this dataset.

    The model's ``limits.min_patch``, clipped to the median volume (so a thin dataset keeps its
    thin axis); 1 on every axis for a topology that pads thin axes inside the network.
    """
    if model.topology.pad_small_axes:
        return (1, 1, 1)
    lo, med = model.limits.min_patch, dataset.median_shape
    return (min(lo[0], med[0]), min(lo[1], med[1]), min(lo[2], med[2]))


def determine_small_volumes(
    dataset: DatasetProfile, model: ModelProfile, spacing: Spacing3 | None
) -> dict[str, str]:
    """Volumes that cannot hold the network's minimum patch, with the reason (name -> reason).

    A volume is small when an axis is below :func:`network_floor`, or when no patch inside it
    (within the model's maximum) builds a network of the model's minimum depth.
    """
    floor = network_floor(model, dataset)
    topo = model.topology
    small: dict[str, str] = {}
    for v in dataset.volumes:
        below = [a for a in range(3) if v.shape[a] < floor[a]]
        if below:
            axes = ", ".join(f"{_AXES[a]}={v.shape[a]} < {floor[a]}" for a in below)
            small[v.name] = (
                f"shape {tuple(v.shape)} is below the minimum patch {floor} of "
                f"'{model.name}' ({axes})"
            )
            continue
        inside = tuple(min(v.shape[a], model.limits.max_patch[a]) for a in range(3))
        patch = round_down_shape((inside[0], inside[1], inside[2]), topo, spacing)
        try:
            if min(patch) < 1:
                raise PlanError(f"no valid size on an axis of {inside}")
            patch_strides(patch, topo, spacing)
        except PlanError as err:
            small[v.name] = f"shape {tuple(v.shape)} cannot hold a '{model.name}' network: {err}"
    return small


def restrict(dataset: DatasetProfile, drop: set[str]) -> DatasetProfile:
    """The profile without the volumes in ``drop`` (shape statistics recomputed)."""
    if not drop or not dataset.volumes:
        return dataset
    return _with_volumes(dataset, [v for v in dataset.volumes if v.name not in drop])


def _with_volumes(dataset: DatasetProfile, keep: list[VolumeStats]) -> DatasetProfile:
    """``dataset`` holding ``keep`` (non-empty), its shape statistics recomputed."""
    shapes = [v.shape for v in keep]
    med = [int(statistics.median_low(s[a] for s in shapes)) for a in range(3)]
    return dataset.model_copy(
        update={
            "volumes": keep,
            "n_volumes": len(keep),
            "min_shape": tuple(min(s[a] for s in shapes) for a in range(3)),
            "max_shape": tuple(max(s[a] for s in shapes) for a in range(3)),
            "median_shape": (med[0], med[1], med[2]),
            "total_size_gb": sum(v.bytes for v in keep) / 1e9,
        }
    )


def determine_patch_bound(dataset: DatasetProfile, policy: PatchPolicy) -> tuple[Shape3, str]:
    """What the data allows the patch to be, per axis, under ``policy``."""
    if policy is PatchPolicy.MEDIAN_PAD:
        return dataset.median_shape, f"median shape {tuple(dataset.median_shape)} (median_pad)"
    return dataset.min_shape, f"smallest volume {tuple(dataset.min_shape)} (min_volume)"


def determine_target(
    spec: TierSpec, policy: PatchPolicy, gpu: bool, spacing: Spacing3, bound: Shape3
) -> tuple[Shape3, str]:
    """The patch to start from before the model's limits, the topology and memory.

    The tier's patch, except for ``median_pad`` on a GPU: nnU-Net's initial patch, the
    aspect ratio of ``1 / spacing`` scaled to the voxels of 256³ and clipped to the median
    shape, which the memory step then shrinks to the budget (at the tier's batch) before the
    batch grows into what is left.
    """
    if policy is not PatchPolicy.MEDIAN_PAD or not gpu:
        return spec.patch, f"tier patch {tuple(spec.patch)}"
    inv = [1.0 / s for s in spacing]
    scale = (256**3 / math.prod(inv)) ** (1 / 3)
    t = [min(round(inv[a] * scale), bound[a]) for a in range(3)]
    return (t[0], t[1], t[2]), (
        f"nnU-Net initial patch: 1/spacing scaled to 256^3 voxels, clipped to {tuple(bound)}"
    )


def capping_volumes(dataset: DatasetProfile, patch: Shape3, target: Shape3) -> dict[str, list[str]]:
    """Per axis the data held below the target, the volumes at the bound (``{"z": ["mv03"]}``)."""
    out: dict[str, list[str]] = {}
    for a in range(3):
        if patch[a] < target[a] and dataset.volumes:
            lo = dataset.min_shape[a]
            names = [v.name for v in dataset.volumes if v.shape[a] == lo]
            if lo < target[a] and lo <= patch[a] + patch[a] // 2:
                out[_AXES[a]] = names
    return out


def grow_batch(patch: Shape3, batch: int, step: StepBudget, *, cap: int) -> tuple[int, float]:
    """The largest batch in ``[batch, cap]`` whose estimate stays within the budget."""
    while batch < cap and step.mb(patch, batch + 1) <= step.budget_mb:
        batch += 1
    return batch, step.mb(patch, batch)


def batch_cap(
    model: ModelProfile, dataset: DatasetProfile, patch: Shape3, settings: PlannerSettings
) -> tuple[int, str]:
    """The most patches per step: the model's max_batch and nnU-Net's dataset-coverage rule."""
    voxels = sum(v.shape[0] * v.shape[1] * v.shape[2] for v in dataset.volumes) or (
        dataset.n_volumes * math.prod(dataset.median_shape)
    )
    cover = max(1, int(voxels * settings.batch_dataset_fraction / math.prod(patch)))
    cap = min(model.limits.max_batch, cover)
    return cap, (
        f"cap {cap}: model max_batch {model.limits.max_batch}, and a batch covers at most "
        f"{settings.batch_dataset_fraction:.0%} of the data's voxels ({cover} patches)"
    )


def resampled_profile(dataset: DatasetProfile, target: Spacing3) -> DatasetProfile:
    """The profile as the network sees it when volumes are resampled to ``target`` spacing.

    Each volume's shape becomes ``round(shape * spacing / target)`` (at least 1), its spacing
    ``target`` — the same arithmetic as MONAI's ``Spacingd``.
    """
    if not dataset.volumes:
        return dataset
    vols = []
    for v in dataset.volumes:
        shape = tuple(max(1, round(v.shape[a] * v.spacing[a] / target[a])) for a in range(3))
        vols.append(v.model_copy(update={"shape": shape, "spacing": tuple(target)}))
    out = _with_volumes(dataset, vols)
    return out.model_copy(update={"spacing_range": (tuple(target), tuple(target))})


# --------------------------------------------------------------------------------------------
# the planner
# --------------------------------------------------------------------------------------------


class _Decisions:
    """Collects decisions; a value the researcher overrode is marked ``override``."""

    def __init__(self, ov: PlanOverrides) -> None:
        self.ov = ov
        self.items: list[Decision] = []

    def __call__(self, name: str, value: Any, reason: str, field: str | None = None) -> None:
        src = self.ov.source(field) if field else Source.AUTO
        if src is Source.OVERRIDE:
            reason = f"set by the researcher ({reason})" if reason else "set by the researcher"
        self.items.append(Decision(name=name, value=value, reason=reason, source=src))


def determine_device(
    hardware: HardwareBudget, ov: PlanOverrides, settings: PlannerSettings, decide: _Decisions
) -> tuple[Tier, bool, int]:
    """Tier (seed table or override), whether it trains on the GPU, and data-parallel devices."""
    auto_tier, tier_reason = determine_tier(hardware, settings)
    tier = ov.tier or auto_tier
    if tier_reason.startswith("WARNING"):
        log.warning("planner: %s", tier_reason.removeprefix("WARNING: "))
    decide("tier", tier.value, tier_reason if ov.tier is None else f"auto was {auto_tier}", "tier")
    gpu = hardware.has_gpu and tier is not Tier.CPU
    devices = hardware.gpu_count if gpu and tier is Tier.CLOUD_MULTI else 1
    device = "cuda" if gpu else "cpu"
    on = f" on {hardware.gpu_name}" if gpu else ""
    decide("device", f"{device}x{devices}" if devices > 1 else device, f"tier {tier.value}{on}")
    return tier, gpu, devices


def determine_memory_model(
    model: ModelProfile,
    hardware: HardwareBudget,
    gpu: bool,
    calibration: Calibration | None,
    decide: _Decisions,
) -> tuple[MemorySpec, str]:
    """A calibration of this model on this device wins over the profile's static figures."""
    if calibration is not None and (calibration.model, calibration.device) != (
        model.name,
        hardware.device_key,
    ):
        decide(
            "calibration",
            None,
            f"ignored {calibration.file_name}: measured for {calibration.model} on "
            f"{calibration.device}, planning {model.name} on {hardware.device_key}",
        )
        calibration = None
    return memory_model(model, gpu, calibration)


def determine_volumes(
    dataset: DatasetProfile,
    model: ModelProfile,
    spacing: Spacing3,
    small_policy: SmallVolumes,
    decide: _Decisions,
) -> tuple[DatasetProfile, DatasetProfile, list[str], list[VolumeStats]]:
    """Split the data into what bounds the patch, what is trained on, and what is quarantined.

    Returns:
        (bounding view, training view, quarantined names, small volumes to pad).

    Raises:
        PlanError: every volume is below the network's minimum patch.
    """
    small = determine_small_volumes(dataset, model, spacing)
    if not small:
        return dataset, dataset, [], []
    if len(small) == len(dataset.volumes):
        first = next(iter(small.items()))
        raise PlanError(
            f"dataset {dataset.data_dir}: all {len(small)} volume(s) are below the minimum "
            f"patch of '{model.name}' (e.g. {first[0]}: {first[1]}); use larger volumes or "
            "another model"
        )
    bounding = restrict(dataset, set(small))
    if small_policy is SmallVolumes.PAD:
        to_pad = [v for v in dataset.volumes if v.name in small]
        for v in to_pad:
            decide(
                f"small_volume:{v.name}",
                "pad",
                f"{small[v.name]}; padded (small_volumes: pad)",
                "small_volumes",
            )
        return bounding, dataset, [], to_pad
    for name, reason in small.items():
        decide(
            f"quarantine:{name}",
            "quarantined",
            f"{reason}; left out of training so the rest goes on (small_volumes: quarantine, "
            "or set small_volumes=pad to zero-pad it)",
            "small_volumes",
        )
        log.warning("planner: quarantined %s: %s", name, reason)
    return bounding, bounding, sorted(small), []


def plan_training(
    hardware: HardwareBudget,
    dataset: DatasetProfile,
    model: ModelProfile,
    overrides: dict[str, Any] | PlanOverrides | None = None,
    calibration: Calibration | None = None,
    settings: PlannerSettings | None = None,
    target_spacing: Spacing3 | None = None,
) -> TrainingPlan:
    """Plan training of ``model`` on ``dataset`` with ``hardware`` (pure: no I/O but settings).

    Args:
        hardware: the budget (detected, from YAML, or a cloud GPU's).
        dataset: the profile of the data (shapes (x, y, z) voxels, sizes float32).
        model: the model profile.
        overrides: TrainingPlan field names (+ ``allow_padding``), see :class:`PlanOverrides`.
        calibration: measured memory figures of this model on this device (preferred).
        settings: planner constants (default: ``configs/planner.yaml``).
        target_spacing: resampling is enabled: plan on the shapes at this spacing.

    Raises:
        ConfigError: an invalid override.
        PlanError: no plan satisfies the constraints; the message says why.
    """
    settings = settings or load_planner_settings()
    ov = parse_overrides(overrides)
    if dataset.n_volumes < 1 or min(dataset.min_shape) < 1:
        raise PlanError(f"dataset {dataset.data_dir}: no usable volume to plan for")
    decide = _Decisions(ov)
    decide("hardware", hardware.device_key, describe_hardware(hardware))
    if target_spacing is not None:
        dataset = resampled_profile(dataset, target_spacing)
        decide(
            "resampling",
            list(target_spacing),
            f"resampling is enabled: planned on the shapes at spacing {tuple(target_spacing)} "
            f"(smallest {tuple(dataset.min_shape)}, median {tuple(dataset.median_shape)})",
        )

    tier, gpu, devices = determine_device(hardware, ov, settings, decide)
    spec: TierSpec = settings.tier(tier)
    mem, mem_source = determine_memory_model(model, hardware, gpu, calibration, decide)
    amp, amp_reason = determine_amp(ov, model, gpu)
    decide("amp", amp, amp_reason, "amp")

    # the data: spacing, small volumes, policy
    spacing, spacing_reason = determine_spacing(dataset)
    use_spacing = spacing if model.topology.pooling == "spacing" else None
    decide("spacing", list(spacing), spacing_reason)
    policy = ov.patch_policy or settings.patch_policy
    small_policy = (
        ov.small_volumes
        or settings.small_volumes
        or (SmallVolumes.PAD if policy is PatchPolicy.MEDIAN_PAD else SmallVolumes.QUARANTINE)
    )
    bounding, training, quarantined, to_pad = determine_volumes(
        dataset, model, spacing, small_policy, decide
    )
    bound, bound_reason = determine_patch_bound(bounding, policy)
    decide("patch_policy", policy.value, bound_reason, "patch_policy")

    auto_rate, rate_reason = determine_cache_rate(hardware, training, settings)
    cache_rate = ov.cache_rate if ov.cache_rate is not None else auto_rate
    decide("cache_rate", cache_rate, rate_reason, "cache_rate")
    cache_gb = training.total_size_gb * settings.cache_bytes_factor * cache_rate
    budget_mb, budget_reason = determine_memory_budget(hardware, gpu, cache_gb, settings)

    # patch: fit + divisibility (or the override), its padding, then memory
    target, target_reason = determine_target(spec, policy, gpu, spacing, bound)
    auto_patch, patch_reason = None, ""
    try:
        auto_patch, patch_reason = fit_patch(
            target,
            bounding,
            model,
            settings.keep_target_voxels,
            bound=bound,
            spacing=use_spacing,
        )
        patch_reason = f"{target_reason}; {patch_reason}"
    except PlanError as err:
        if ov.patch_size is None:
            raise
        patch_reason = f"no automatic patch fits: {err}"
    if ov.patch_size is not None:
        validate_patch_override(ov.patch_size, model, use_spacing)
        patch: Shape3 = (ov.patch_size[0], ov.patch_size[1], ov.patch_size[2])
        patch_reason = f"auto would fit {auto_patch}" if auto_patch else patch_reason
    else:
        assert auto_patch is not None
        patch = auto_patch
    base_batch = min(spec.batch, model.limits.max_batch)
    step = StepBudget(model=model, mem=mem, amp=amp, budget_mb=budget_mb, spacing=use_spacing)
    patch, batch, estimate, notes = fit_memory(
        patch,
        ov.batch_size if ov.batch_size is not None else base_batch,
        step,
        patch_fixed=ov.patch_size is not None,
        batch_fixed=ov.batch_size is not None,
        advice="Use a bigger GPU or a lighter model."
        if gpu
        else "Free RAM, lower cache_rate (--set cache_rate=0.2) or use a lighter model.",
    )
    decide("patch_size", list(patch), "; ".join([patch_reason, *notes]), "patch_size")
    capped = capping_volumes(bounding, patch, target)
    if capped and policy is PatchPolicy.MIN_VOLUME:
        decide(
            "capped_by",
            capped,
            "the patch stays inside every trained volume; these volumes set the bound: "
            + "; ".join(
                f"{a}: {', '.join(n[:5])}" + (" ..." if len(n) > 5 else "")
                for a, n in capped.items()
            )
            + " (patch_policy=median_pad would pad them instead)",
        )
    padded, pad_decisions = check_padding(patch, training, ov, policy)
    decide.items.extend(pad_decisions)
    for v in to_pad:
        if v.name not in padded:  # a small volume is padded even where the patch fits an axis
            padded.append(v.name)
            decide.items.append(_pad_decision(v, patch, Source.AUTO, "below the minimum patch"))

    # the network the patch implies
    strides = patch_strides(patch, model.topology, use_spacing)
    divisors = divisors_of(strides)
    rule = (
        f"spacing-aware pooling at {tuple(spacing)} (nnU-Net v2 rule)"
        if use_spacing
        else f"{model.topology.rule} rule; axes too thin to halve keep stride 1"
    )
    decide(
        "strides",
        [list(s) for s in strides],
        f"{len(strides)} levels; per-axis divisors {divisors} from '{model.name}' topology "
        f"({rule})",
    )
    net_shape = network_shape(patch, model.topology)
    if net_shape != patch:
        decide(
            "network_padding",
            list(net_shape),
            f"'{model.name}' needs multiples of {model.topology.fixed_divisor}: thin axes of the "
            f"patch {patch} are zero-padded to {net_shape} inside the network (the data is not)",
        )

    # batch (grows into a GPU's spare budget), accumulation, memory
    cap, cap_reason = batch_cap(model, training, patch, settings)
    if ov.batch_size is not None:
        batch_reason = f"tier {tier.value} would use {base_batch}"
    else:
        batch_reason = f"tier {tier.value} batch {spec.batch} (model max {model.limits.max_batch})"
        if batch != base_batch:
            batch_reason += f", reduced to {batch} to fit memory"
        elif gpu and batch < cap:
            grown, estimate = grow_batch(patch, batch, step, cap=cap)
            if grown > batch:
                batch_reason += f", grown to {grown} to fill the VRAM budget ({cap_reason})"
                batch = grown
    decide("batch_size", batch, batch_reason, "batch_size")
    decide("batch_cap", cap, cap_reason)
    auto_accum = max(1, math.ceil(base_batch / batch)) if ov.batch_size is None else 1
    accum = ov.grad_accum_steps or auto_accum
    decide(
        "grad_accum_steps",
        accum,
        f"keeps the effective batch at {batch * auto_accum} (tier batch {base_batch})"
        if auto_accum > 1
        else "the batch was not reduced",
        "grad_accum_steps",
    )
    decide(
        "memory",
        round(estimate, 1),
        f"estimate {estimate:.0f} MiB <= budget {budget_mb:.0f} MiB ({budget_reason}); "
        f"memory model: {mem_source}",
    )

    # loader, sliding window, cloud
    auto_workers = max(0, min(spec.workers, hardware.cpu_cores - 1))
    workers = ov.num_workers if ov.num_workers is not None else auto_workers
    decide(
        "num_workers",
        workers,
        f"tier {tier.value} wants {spec.workers}, {hardware.cpu_cores} CPU cores leave "
        f"{auto_workers} besides the main process",
        "num_workers",
    )
    sw_roi = determine_sw_roi(ov, patch, divisors)
    decide("sw_roi", list(sw_roi), "the training patch (same network shapes)", "sw_roi")
    sw_overlap = ov.sw_overlap if ov.sw_overlap is not None else model.sw_overlap
    decide("sw_overlap", sw_overlap, f"model profile '{model.name}' default", "sw_overlap")
    sw_batch, sw_batch_reason = determine_sw_batch(ov, sw_roi, batch, step, settings.sw_batch_max)
    decide("sw_batch_size", sw_batch, sw_batch_reason, "sw_batch_size")
    count = devices if tier is Tier.CLOUD_MULTI else 1
    accelerators, acc_reason = determine_accelerators(ov, model, patch, batch, count, settings)
    decide("accelerators", accelerators, acc_reason, "accelerators")

    return TrainingPlan(
        model=model.name,
        tier=tier,
        patch_size=patch,
        batch_size=batch,
        cache_rate=cache_rate,
        num_workers=workers,
        amp=amp,
        grad_accum_steps=accum,
        sw_roi=sw_roi,
        sw_overlap=sw_overlap,
        sw_batch_size=sw_batch,
        strides=strides,
        kernel_sizes=kernels_for(strides, model.topology),
        padded_volumes=padded,
        quarantined_volumes=quarantined,
        patch_policy=policy,
        spacing=spacing,
        accelerators=accelerators,
        vram_estimate_mb=round(estimate, 1),
        dataset_hash=dataset.dataset_hash,
        network=plan_network(model),
        decisions=decide.items,
        device="cuda" if gpu else "cpu",
        devices=devices,
    )


def plan_network(model: ModelProfile) -> PlanNetwork:
    """The profile's network block, copied into the plan (and so into its hash)."""
    return PlanNetwork.model_validate(model.network.model_dump(mode="json"))


def network_plan(
    model: ModelProfile,
    patch: Shape3,
    batch: int = 1,
    amp: bool = False,
    spacing: Spacing3 | None = None,
) -> TrainingPlan:
    """A minimal plan that only fixes the network (strides from ``patch``), for calibration,
    benchmarks and tests that build a network at a chosen patch.

    Raises:
        ConfigError: ``patch`` does not suit the model's topology.
    """
    validate_patch_override(patch, model, spacing)
    strides = patch_strides(patch, model.topology, spacing)
    return TrainingPlan(
        model=model.name,
        tier=Tier.CPU,
        patch_size=patch,
        batch_size=batch,
        cache_rate=0.0,
        num_workers=0,
        amp=amp,
        sw_roi=patch,
        sw_overlap=model.sw_overlap,
        sw_batch_size=batch,
        strides=strides,
        kernel_sizes=kernels_for(strides, model.topology),
        network=plan_network(model),
        spacing=spacing,
    )
