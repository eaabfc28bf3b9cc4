"""The experiment YAML (``configs/experiments/*.yaml``): what the main job runs.

Sections are validated at this boundary: ``plan`` by the planner's override rules, ``training``
by :mod:`minivess.training`'s config, the rest here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from minivess.config import StrictModel, config_dir, load_yaml_model

#: The experiment the main job runs when no ``--config`` is given.
DEFAULT_EXPERIMENT = "default"


class DataSection(StrictModel):
    """Which data to use. ``dir: null`` synthesises the embedded MiniVess-like default."""

    dir: Path | None = None
    test_dir: Path | None = Field(
        default=None,
        description="held-out labelled volumes for the analysis flow; null = a synthetic held-out "
        "set for synthetic data, else the training data (optimistic, and logged as such)",
    )
    synth_scale: Literal["small", "full"] = "small"
    synth_volumes: int | None = None
    seed: int = 0


class DeploySection(StrictModel):
    """The deploy flow's switches."""

    enabled: bool = True
    backend: Literal["onnx", "torch"] = "onnx"
    force: bool = Field(
        default=False,
        description="deploy a registered model even when it does not beat the threshold baseline",
    )


class ExperimentConfig(StrictModel):
    """One experiment: data, model, planner overrides, training grid, deployment."""

    name: str = DEFAULT_EXPERIMENT
    data: DataSection = Field(default_factory=DataSection)
    model: str = "dynunet"
    hardware: Path | None = Field(default=None, description="hardware YAML; null = detect")
    plan: dict[str, Any] = Field(default_factory=dict, description="planner overrides")
    training: dict[str, Any] = Field(default_factory=dict, description="training config + grid")
    deploy: DeploySection = Field(default_factory=DeploySection)
    target: Literal["local", "ssh", "spot", "serve"] = "local"


def experiment_path(name_or_path: str | Path | None) -> Path:
    """Resolve ``--config``: a path, or a name under ``configs/experiments/``."""
    if name_or_path is None:
        name_or_path = DEFAULT_EXPERIMENT
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        return path
    return config_dir() / "experiments" / f"{path}.yaml"


def load_experiment(name_or_path: str | Path | None = None) -> ExperimentConfig:
    """Load and validate an experiment YAML (strict: unknown keys fail with a hint)."""
    return load_yaml_model(ExperimentConfig, experiment_path(name_or_path))
