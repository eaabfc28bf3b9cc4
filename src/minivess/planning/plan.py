"""The training plan: a frozen, versioned artifact where every value carries its decision.

The planner (:mod:`minivess.planning.planner`) writes it; training, launch and serving read it
through this typed view. ``plan.json`` is ``TrainingPlan.model_dump_json()``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from minivess.data.schema import Shape3, Spacing3
from minivess.keys import PatchPolicy, Source, Tier

#: Version of the plan schema, bumped on breaking changes (2: the network's builder and params;
#: 3: ``sw_batch_size``).
PLAN_SCHEMA_VERSION = 3


class Decision(BaseModel):
    """One automatic or overridden choice: ``{name, value, reason, source}``."""

    model_config = ConfigDict(frozen=True)

    name: str
    value: Any
    reason: str
    source: Source = Source.AUTO


class PlanNetwork(BaseModel):
    """The network the plan was made for: the profile's ``network`` block, copied in.

    With it, a plan (and every checkpoint, which embeds its plan) rebuilds its network without
    the current model-profile YAML; editing the profile changes new plans and their hash only.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    builder: str | None = None
    entry_point: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)


class TrainingPlan(BaseModel):
    """Everything a training run needs to know about shapes, memory and hardware.

    ``patch_size`` and ``sw_roi`` are (x, y, z) voxels. ``strides`` has one (x, y, z) entry per
    network level, the first being the input convolution's stride (1, 1, 1); the product of all
    strides per axis is that axis' divisibility requirement.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = PLAN_SCHEMA_VERSION
    model: str = Field(description="model profile name, e.g. 'dynunet'")
    tier: Tier
    patch_size: Shape3
    batch_size: int
    cache_rate: float
    num_workers: int
    amp: bool
    grad_accum_steps: int = 1
    sw_roi: Shape3
    sw_overlap: float
    sw_batch_size: int = Field(
        ge=1,
        description="windows per forward pass in sliding-window "
        "inference (validation, evaluation, serving)",
    )
    strides: list[Shape3]
    kernel_sizes: list[Shape3]
    padded_volumes: list[str] = Field(
        default_factory=list, description="volumes zero-padded up to the patch when loaded"
    )
    quarantined_volumes: list[str] = Field(
        default_factory=list,
        description="volumes below the network's minimum patch, left out (reasons: decisions)",
    )
    patch_policy: PatchPolicy = PatchPolicy.MIN_VOLUME
    spacing: Spacing3 | None = Field(
        default=None, description="voxel spacing the pooling was derived from (x, y, z)"
    )
    accelerators: list[str] = Field(default_factory=list)
    vram_estimate_mb: float = Field(
        default=0.0, description="MiB of one training step on the training device (GPU or CPU)"
    )
    device: str = Field(default="cpu", description="training device kind: 'cpu' or 'cuda'")
    devices: int = Field(default=1, description="data-parallel devices (GPUs) per node")
    dataset_hash: str = ""
    network: PlanNetwork | None = Field(
        default=None,
        description="builder/entry point and params (filters, blocks...); None: hand-built plans "
        "in tests, which take the model profile's",
    )
    decisions: list[Decision] = Field(default_factory=list)

    @field_validator("schema_version")
    @classmethod
    def _known_schema(cls, value: int) -> int:
        if value != PLAN_SCHEMA_VERSION:
            raise ValueError(
                f"plan schema_version {value} is not {PLAN_SCHEMA_VERSION} (this minivess); "
                "re-plan with `minivess plan` (a plan from another version may build another "
                "network)"
            )
        return value

    @property
    def divisors(self) -> Shape3:
        """Per-axis product of the strides: every patch axis must be a multiple of it."""
        out = [1, 1, 1]
        for stride in self.strides:
            for axis in range(3):
                out[axis] *= stride[axis]
        return (out[0], out[1], out[2])

    @property
    def plan_hash(self) -> str:
        """Content hash of the plan (decisions excluded), stable across runs."""
        payload = self.model_dump(mode="json", exclude={"decisions"})
        blob = json.dumps(payload, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def differences(self, other: TrainingPlan) -> list[str]:
        """Dotted paths of the fields (decisions excluded) where ``other`` differs from this plan,
        e.g. ``["network.params.filters", "patch_size"]``."""
        return _diff(
            self.model_dump(mode="json", exclude={"decisions"}),
            other.model_dump(mode="json", exclude={"decisions"}),
        )

    def decision(self, name: str) -> Decision:
        """The decision called ``name``."""
        for d in self.decisions:
            if d.name == name:
                return d
        raise KeyError(f"no decision named {name!r} in the plan")

    def save(self, path: Path) -> Path:
        """Write the plan as JSON and return the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.model_dump_json(indent=2))
        return path

    @classmethod
    def load(cls, path: Path) -> TrainingPlan:
        """Read a plan written by :meth:`save`.

        Raises:
            ConfigError: naming the file: not JSON, an unknown key ("did you mean"), a bad value,
                or a ``schema_version`` this minivess does not read.
        """
        import json

        from minivess.config import parse_model
        from minivess.errors import ConfigError

        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise ConfigError(f"{path}: not a readable plan JSON ({err}).") from None
        version = data.get("schema_version") if isinstance(data, dict) else None
        if version != PLAN_SCHEMA_VERSION:
            raise ConfigError(
                f"{path}: field 'schema_version': {version!r}, but this minivess reads plan "
                f"schema {PLAN_SCHEMA_VERSION}; re-plan with `minivess plan` to write a new one."
            )
        return parse_model(cls, data, str(path))


def _diff(a: Any, b: Any, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for key in sorted(set(a) | set(b)):
            out += _diff(a.get(key), b.get(key), f"{path}.{key}" if path else str(key))
        return out
    return [] if a == b else [path or "<plan>"]
