"""Training: MONAI pipeline, losses, resumable checkpoints (local/S3), torchrun DDP.

Public API::

    from minivess.training import TrainConfig, train
    summary = train(data_dir, plan, TrainConfig(loss="dicece", epochs=2), tracker=None)

Importing this package does not import torch or MONAI; :func:`train` does.
"""

from __future__ import annotations

from minivess.training.config import (
    GridConfig,
    LossName,
    ResamplingConfig,
    TrainConfig,
    expand_grid,
)
from minivess.training.loop import PREEMPTED_EXIT_CODE, TrainingPreempted, TrainSummary, train
from minivess.training.tracker import NullTracker, Tracker

__all__ = [
    "PREEMPTED_EXIT_CODE",
    "GridConfig",
    "LossName",
    "NullTracker",
    "ResamplingConfig",
    "Tracker",
    "TrainConfig",
    "TrainSummary",
    "TrainingPreempted",
    "expand_grid",
    "train",
]
