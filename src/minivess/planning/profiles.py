"""Model profiles: ``configs/model_profiles/<name>.yaml``, read by the planner AND the builder.

A profile holds the topology rule (how levels and strides derive from the patch, per axis),
the memory model (base + per-voxel training/inference bytes, AMP factor), limits, and which
network to build. Adding a model = dropping a YAML file there (plus, for a new network, a
Python ``module:callable`` entry point). See ``docs/planner.md``.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from minivess.config import StrictModel, config_dir, format_validation_error, load_yaml_model
from minivess.data.schema import Shape3
from minivess.errors import ConfigError


class DynUNetParams(StrictModel):
    """``network.params`` of the ``dynunet`` builder (``models.builders.build_dynunet``)."""

    base_filters: int = Field(default=16, ge=1)
    max_filters: int = Field(default=256, ge=1)
    res_block: bool = False


class SegResNetParams(StrictModel):
    """``network.params`` of the ``segresnet`` builder."""

    init_filters: int = Field(default=16, ge=1)
    blocks_down: list[int] = Field(default_factory=lambda: [1, 2, 2, 4])


class SwinUNETRParams(StrictModel):
    """``network.params`` of the ``swinunetr`` builder."""

    feature_size: int = Field(default=12, ge=12)
    depths: list[int] = Field(default_factory=lambda: [2, 2, 2, 2])
    num_heads: list[int] = Field(default_factory=lambda: [3, 6, 12, 24])
    window_size: int = Field(default=7, ge=1)
    use_v2: bool = True
    norm_groups: int = Field(default=3, ge=1)


#: The schema of ``network.params`` per built-in builder (an entry point's params are its own).
BUILDER_PARAMS: dict[str, type[StrictModel]] = {
    "dynunet": DynUNetParams,
    "segresnet": SegResNetParams,
    "swinunetr": SwinUNETRParams,
}
#: Networks :func:`minivess.models.build_model` knows without an entry point.
BUILTIN_BUILDERS = tuple(BUILDER_PARAMS)


class NetworkSpec(StrictModel):
    """Which network to build: a built-in ``builder`` or a ``module:callable`` entry point.

    The entry point is called as ``fn(plan, in_channels=..., out_channels=..., **params)``
    and must return a ``torch.nn.Module``.
    """

    builder: str | None = None
    entry_point: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_source(self) -> NetworkSpec:
        if (self.builder is None) == (self.entry_point is None):
            raise ValueError("set exactly one of 'builder' (built-in) or 'entry_point' (module:fn)")
        if self.builder is not None and self.builder not in BUILTIN_BUILDERS:
            close = difflib.get_close_matches(self.builder, BUILTIN_BUILDERS, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise ValueError(
                f"unknown builder '{self.builder}'.{hint} Built-ins: {', '.join(BUILTIN_BUILDERS)};"
                " for a new network use entry_point: 'package.module:function'"
            )
        if self.builder is not None:
            schema = BUILDER_PARAMS[self.builder]
            try:
                schema.model_validate(self.params)
            except ValidationError as err:
                raise ValueError(
                    str(format_validation_error(err, schema, f"network.params ({self.builder})"))
                ) from None
        if self.entry_point is not None and ":" not in self.entry_point:
            raise ValueError(f"entry_point '{self.entry_point}' must look like 'package.module:fn'")
        return self


class TopologySpec(StrictModel):
    """How the network's levels and per-axis strides derive from the patch.

    * ``per_axis``: at each deeper level an axis is halved only while it stays
      ``>= min_feature_size`` voxels, so a thin axis (Z=5) keeps stride 1 at every level and the
      patch is divisible, per axis, by ``2**(its number of halvings)``.
    * ``fixed``: every axis is halved ``log2(fixed_divisor)`` times (transformers with patch
      merging). With ``pad_small_axes`` an axis thinner than ``fixed_divisor`` is zero-padded
      inside the network instead, and keeps stride 1 in the plan.
    """

    rule: Literal["per_axis", "fixed"] = "per_axis"
    max_levels: int = Field(ge=1, description="resolution levels incl. the input level")
    min_levels: int = Field(default=1, ge=1)
    min_feature_size: int = Field(default=4, ge=1, description="voxels, smallest feature map")
    fixed_divisor: int | None = Field(default=None, ge=2)
    pad_small_axes: bool = False
    pooling: Literal["shape", "spacing"] = Field(
        default="shape",
        description="per_axis only. shape: halve an axis while it stays >= min_feature_size; "
        "spacing: nnU-Net v2's rule, an axis joins the pooling once its spacing is within 2x "
        "of the finest (minivess.planning.pooling)",
    )
    kernel_rule: Literal["full", "strided"] = Field(
        default="full", description="full: kernel 3 everywhere; strided: 3 only where stride 2"
    )

    @model_validator(mode="after")
    def _consistent(self) -> TopologySpec:
        if self.min_levels > self.max_levels:
            raise ValueError("min_levels must be <= max_levels")
        if self.pooling == "spacing" and self.rule != "per_axis":
            raise ValueError("pooling 'spacing' needs rule 'per_axis'")
        if self.rule == "fixed":
            d = self.fixed_divisor
            if d is None or d & (d - 1):
                raise ValueError("rule 'fixed' needs fixed_divisor, a power of two (e.g. 32)")
            if self.max_levels != d.bit_length():
                raise ValueError(
                    f"rule 'fixed': max_levels must be log2(fixed_divisor) + 1 = {d.bit_length()}"
                )
        return self


class MemorySpec(StrictModel):
    """Memory model of one device kind: ``base_mb + batch * voxels * bytes_per_voxel``.

    ``train_bytes_per_voxel`` is the peak of one training step (forward, backward, optimizer)
    per input voxel of the network; ``amp_factor`` multiplies it under mixed precision.
    """

    base_mb: float = Field(ge=0, description="MiB: weights, optimizer state, workspace")
    train_bytes_per_voxel: float = Field(gt=0)
    infer_bytes_per_voxel: float = Field(gt=0)
    amp_factor: float = Field(default=1.0, gt=0, le=1)
    bytes_per_feature_voxel: float | None = Field(
        default=None,
        gt=0,
        description="feature-map model: bytes per (voxel x channel) summed over the levels; "
        "when set it replaces train_bytes_per_voxel (minivess.planning.memory)",
    )
    feature_width: int = Field(default=16, ge=1, description="channels at the input level")
    max_feature_width: int = Field(default=1024, ge=1, description="channel cap per level")


class LimitsSpec(StrictModel):
    """Bounds on the plan: patch (x, y, z) voxels and per-device batch."""

    min_patch: Shape3 = (16, 16, 1)
    max_patch: Shape3 = (256, 256, 128)
    max_batch: int = Field(default=16, ge=1)


class ModelProfile(StrictModel):
    """One model: what the planner needs to size it and what the builder needs to build it."""

    name: str
    description: str = ""
    network: NetworkSpec
    topology: TopologySpec
    vram: MemorySpec = Field(description="CUDA memory model (max_memory_allocated)")
    ram: MemorySpec | None = Field(default=None, description="CPU model (RSS); default: vram")
    supports_amp: bool = True
    limits: LimitsSpec = Field(default_factory=LimitsSpec)
    sw_overlap: float = Field(default=0.25, ge=0, lt=1)

    def memory(self, gpu: bool) -> MemorySpec:
        """The memory model of the training device (GPU: ``vram``; CPU: ``ram`` or ``vram``)."""
        return self.vram if gpu or self.ram is None else self.ram


def profiles_dir() -> Path:
    """``configs/model_profiles`` (follows ``$MINIVESS_CONFIG_DIR``)."""
    return config_dir() / "model_profiles"


def list_model_profiles() -> list[str]:
    """Names of the shipped (and dropped-in) model profiles, sorted."""
    folder = profiles_dir()
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def load_model_profile(name_or_path: str | Path) -> ModelProfile:
    """Load a profile by name (``"dynunet"``) or by path to a YAML file.

    Raises:
        ConfigError: unknown name (with "did you mean"), or an invalid file.
    """
    text = str(name_or_path)
    path = Path(text)
    if not (text.endswith((".yaml", ".yml")) or path.is_file()):
        path = profiles_dir() / f"{text}.yaml"
        if not path.is_file():
            known = list_model_profiles()
            close = difflib.get_close_matches(text, known, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise ConfigError(
                f"model '{text}': no profile {path}.{hint} Known: {', '.join(known) or 'none'}."
                " Add one by dropping a YAML file into that folder (docs/planner.md)."
            )
    profile = load_yaml_model(ModelProfile, path)
    if profile.name != path.stem:
        raise ConfigError(
            f"{path}: name '{profile.name}' differs from the file name; plans refer to models "
            f"by name, so rename the file to {profile.name}.yaml or set name: {path.stem}."
        )
    if profile.topology.rule == "per_axis" and profile.network.builder == "swinunetr":
        raise ConfigError(f"{path}: swinunetr needs topology.rule 'fixed' (fixed_divisor 32).")
    return profile
