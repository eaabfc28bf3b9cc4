"""Training configuration: one strict object per run, and the loss × fold grid of an experiment.

``TrainConfig`` is what :func:`minivess.training.train` reads; ``GridConfig`` is the experiment
YAML's ``training:`` mapping (the same fields, plus ``losses`` and ``folds`` lists) and expands
into one ``TrainConfig`` per (loss, fold) cell with its own checkpoint directory.

Example ``training:`` mapping::

    training:
      losses: [dicece, cldice]
      folds: [0, 1, 2]
      n_folds: 3
      epochs: 50
      checkpoint_dir: s3://lab-bucket/checkpoints/exp1
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field, model_validator

from minivess.config import StrictModel, config_dir, load_yaml_model, parse_model

if TYPE_CHECKING:
    from minivess.planning.plan import TrainingPlan


class LossName(StrEnum):
    """Losses selectable in the experiment YAML (MONAI implementations)."""

    DICECE = "dicece"  # monai.losses.DiceCELoss
    DICE = "dice"  # monai.losses.DiceLoss
    FOCAL = "focal"  # monai.losses.FocalLoss
    CLDICE = "cldice"  # monai.losses.SoftDiceclDiceLoss (topology-aware, for vessels)


class ResamplingMethod(StrEnum):
    """Resampling methods the training pipeline implements."""

    SPACING = "spacing"


class ResamplingConfig(StrictModel):
    """Optional resampling: a scientific decision, off unless the researcher enables it.

    ``target_spacing`` is (x, y, z) in the units of the NIfTI header (µm for MiniVess).
    """

    enabled: bool = False
    method: ResamplingMethod | None = None
    target_spacing: tuple[float, float, float] | None = None

    @model_validator(mode="after")
    def _complete_when_enabled(self) -> ResamplingConfig:
        if self.enabled and (self.method is None or self.target_spacing is None):
            raise ValueError(
                "resampling.enabled is true but method/target_spacing is missing; set e.g. "
                "method: spacing and target_spacing: [1.0, 1.0, 1.0] (header units)"
            )
        return self


class DataDefaults(StrictModel):
    """The schema of ``configs/data/defaults.yaml``: a typo there is an error, never silently
    the default (a misspelt ``resampling:`` would turn resampling off)."""

    resampling: ResamplingConfig = Field(default_factory=ResamplingConfig)


def data_defaults_path() -> Path:
    """``configs/data/defaults.yaml`` (follows ``$MINIVESS_CONFIG_DIR``)."""
    return config_dir() / "data" / "defaults.yaml"


def default_resampling() -> ResamplingConfig:
    """The ``resampling:`` block of ``configs/data/defaults.yaml``, or off when it is absent.

    Raises:
        ConfigError: the file has an unknown key or a bad value (named, with "did you mean").
    """
    path = data_defaults_path()
    if not path.is_file():
        return ResamplingConfig()
    return load_yaml_model(DataDefaults, path).resampling


class TrainConfig(StrictModel):
    """Settings of one training run (one loss, one fold).

    Attributes:
        loss: training loss, see :class:`LossName`.
        epochs: total number of epochs (a resumed run continues up to this number).
        fold / n_folds: which fold of the seed-deterministic k-fold split is validation.
        seed: seeds the split, the weights, the sampling and the augmentation.
        lr / weight_decay: AdamW settings; the learning rate follows a cosine schedule.
        val_interval: validate every N epochs (and always after the last one).
        checkpoint_dir: local directory or ``s3://bucket/prefix``.
        samples_per_volume: patches cropped per volume per visit (at most the plan's batch size).
        pos_fraction: fraction of patches centred on foreground (RandCropByPosNegLabeld).
        augment: light augmentation (flips, xy rotations, intensity scale/shift).
        resume: continue from ``checkpoint_dir/last.pt`` when it exists.
        resampling: optional resampling, off by default.
    """

    loss: LossName = LossName.DICECE
    epochs: int = Field(default=2, ge=1)
    fold: int = Field(default=0, ge=0)
    n_folds: int = Field(default=3, ge=2)
    seed: int = Field(default=0, ge=0)  # numpy's generators take no negative seed
    lr: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=1e-5, ge=0)
    val_interval: int = Field(default=1, ge=1)
    checkpoint_dir: str = "checkpoints"
    samples_per_volume: int = Field(default=2, ge=1)
    pos_fraction: float = Field(default=0.5, ge=0.0, le=1.0)
    augment: bool = True
    resume: bool = True
    resampling: ResamplingConfig = Field(default_factory=default_resampling)

    @model_validator(mode="after")
    def _fold_in_range(self) -> TrainConfig:
        if self.fold >= self.n_folds:
            raise ValueError(f"fold {self.fold} is out of range for n_folds={self.n_folds}")
        return self


class GridConfig(TrainConfig):
    """The experiment YAML's ``training:`` mapping: TrainConfig fields plus the grid axes.

    ``losses`` defaults to ``[loss]`` and ``folds`` to ``[fold]``; each cell gets
    ``checkpoint_dir/<loss>-fold<k>``.
    """

    losses: list[LossName] | None = None
    folds: list[int] | None = None

    @model_validator(mode="after")
    def _folds_in_range(self) -> GridConfig:
        bad = [f for f in self.folds or [] if not 0 <= f < self.n_folds]
        if bad:
            raise ValueError(f"folds {bad} out of range for n_folds={self.n_folds}")
        return self

    def cells(self) -> list[TrainConfig]:
        """One TrainConfig per (loss, fold), losses outer, folds inner."""
        base = self.model_dump(exclude={"losses", "folds"})
        out = []
        for loss in self.losses or [self.loss]:
            for fold in self.folds or [self.fold]:
                cell = {**base, "loss": loss, "fold": fold}
                cell["checkpoint_dir"] = join_uri(self.checkpoint_dir, cell_name(loss, fold))
                out.append(TrainConfig.model_validate(cell))
        return out


def cell_name(loss: str, fold: int) -> str:
    """Directory name of one grid cell, e.g. ``dicece-fold0``."""
    return f"{LossName(loss).value}-fold{fold}"


def join_uri(base: str, name: str) -> str:
    """Join a local path or ``s3://`` URI with a child name."""
    return f"{base.rstrip('/')}/{name}"


def expand_grid(training: dict[str, Any] | None, origin: str = "training") -> list[TrainConfig]:
    """Expand an experiment YAML's ``training:`` mapping into the loss × fold grid.

    Raises:
        ConfigError: naming ``origin`` and the bad field, with a "did you mean" hint.
    """
    return parse_model(GridConfig, training or {}, origin).cells()


def samples_per_volume(plan: TrainingPlan, cfg: TrainConfig) -> int:
    """Patches cropped per volume visit: ``cfg.samples_per_volume`` lowered to divide the batch.

    The loader then takes ``plan.batch_size // samples_per_volume`` volumes per batch, so every
    full batch holds exactly ``plan.batch_size`` patches.
    """
    n = max(1, min(cfg.samples_per_volume, plan.batch_size))
    while plan.batch_size % n:
        n -= 1
    return n


def volumes_per_batch(plan: TrainingPlan, cfg: TrainConfig) -> int:
    """Volumes the loader takes per batch, so that a full batch is ``plan.batch_size`` patches."""
    return max(1, plan.batch_size // samples_per_volume(plan, cfg))
