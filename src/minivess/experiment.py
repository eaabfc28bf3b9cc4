"""The experiment YAML (``configs/experiments/*.yaml``): what the main job runs.

Every section has a schema and the whole file is validated at this boundary, before Prefect
starts or anything is written: ``plan`` by the planner's overrides
(:class:`~minivess.planning.planner.PlanOverrides`), ``training`` by the training grid
(:class:`~minivess.training.config.GridConfig`), ``model`` against the model profiles (whose
``network.params`` have a schema per builder), and ``configs/data/defaults.yaml`` by
:class:`~minivess.training.config.DataDefaults`. Errors name the file, the field and a
"did you mean".
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from minivess.config import StrictModel, config_dir, load_yaml_model
from minivess.errors import ConfigError
from minivess.planning.planner import PlanOverrides
from minivess.serving.capacity import CAPACITY_ROUNDS
from minivess.training.config import GridConfig

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
    synth_volumes: int | None = Field(default=None, ge=1)
    seed: int = Field(
        default=0, ge=0, description="the synthetic data's seed (numpy: not negative)"
    )

    @field_validator("dir", "test_dir")
    @classmethod
    def _home(cls, path: Path | None) -> Path | None:
        """``~/mvdata`` is the researcher's home, as in a shell (relative paths: the cwd's)."""
        return path.expanduser() if path is not None else None


class DeploySection(StrictModel):
    """The deploy flow's switches."""

    enabled: bool = True
    backend: Literal["auto", "onnx", "torch", "eager"] = Field(
        default="auto",
        description="auto: the capacity plan's pick (the fastest measured); else that backend",
    )
    force: bool = Field(
        default=False,
        description="deploy a registered model even when it does not beat the threshold baseline",
    )
    capacity_rounds: int = Field(
        default=CAPACITY_ROUNDS,
        ge=1,
        description="timed rounds per backend in the capacity plan, after one warm-up each "
        "(interleaved; the best of each is kept): fewer is quicker and noisier",
    )


class ExperimentConfig(StrictModel):
    """One experiment: data, model, planner overrides, training grid, deployment."""

    name: str = DEFAULT_EXPERIMENT
    data: DataSection = Field(default_factory=DataSection)
    model: str = "dynunet"
    hardware: Path | None = Field(default=None, description="hardware YAML; null = detect")
    plan: PlanOverrides = Field(default_factory=PlanOverrides, description="planner overrides")
    training: GridConfig = Field(default_factory=GridConfig, description="training config + grid")
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
    """Load and validate an experiment YAML and the model profile it names.

    Raises:
        ConfigError: naming the file and the field, with a "did you mean" for unknown keys and
            unknown model names.
    """
    import difflib

    from minivess.planning.profiles import list_model_profiles, load_model_profile

    path = experiment_path(name_or_path)
    exp = load_yaml_model(ExperimentConfig, path)
    known = list_model_profiles()
    if exp.model not in known and not exp.model.endswith((".yaml", ".yml")):
        close = difflib.get_close_matches(exp.model, known, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"{path}: field 'model': no model profile '{exp.model}'.{hint} "
                          f"Known: {', '.join(known)} (configs/model_profiles/).")  # fmt: skip
    load_model_profile(exp.model)  # its network.params are checked against the builder's schema
    return exp
