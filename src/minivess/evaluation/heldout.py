"""Which data the analysis scores members on: a held-out set, never silently the training set."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from minivess.experiment import ExperimentConfig
    from minivess.settings import Settings

log = logging.getLogger(__name__)

#: Volumes in the synthetic held-out set (10: enough for a t-interval of useful width; 3 gave
#: intervals that were mostly noise) and the seed offset that keeps it apart from training.
HELD_OUT_VOLUMES = 10
HELD_OUT_SEED_OFFSET = 1000


def evaluation_data_dir(exp: ExperimentConfig, settings: Settings, train_data_dir: Path) -> Path:
    """The folder the members are scored on.

    * ``data.test_dir`` when the experiment names one;
    * for the synthetic default (no ``data.dir``, trained on the workspace's synthetic data), a
      synthetic held-out set in ``<workspace>/data-test`` drawn with another seed (made once);
    * otherwise the training data itself, with a warning that the scores are optimistic.
    """
    if exp.data.test_dir:
        return Path(exp.data.test_dir)
    synthetic = Path(train_data_dir).resolve() == settings.data_dir.resolve()
    if exp.data.dir is None and synthetic:
        from minivess.data.synth import synthesize

        test_dir = settings.workspace / "data-test"
        if not any(test_dir.glob("raw/*.nii*")):
            synthesize(test_dir, scale=exp.data.synth_scale, n_volumes=HELD_OUT_VOLUMES,
                       seed=exp.data.seed + HELD_OUT_SEED_OFFSET, progress=False)  # fmt: skip
        return test_dir
    log.warning("analysis: no data.test_dir in experiment '%s'; scoring on the training data "
                "%s, so the figures are optimistic", exp.name, train_data_dir)  # fmt: skip
    return Path(train_data_dir)
