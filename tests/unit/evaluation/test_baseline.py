"""The threshold baseline: the learned threshold maximises mean per-volume Dice (checked against
brute force), and it transfers to new volumes of the same kind."""

from __future__ import annotations

import numpy as np
import pytest

from minivess.evaluation.baseline import CANDIDATES, learn_threshold
from minivess.evaluation.metrics import dice


def _volume(seed: int, contrast: float = 2.5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    label = np.zeros((24, 24, 8), bool)
    label[4:20, 10 + seed % 3 : 13 + seed % 3, 2:6] = True
    image = contrast * label + rng.normal(0, 1, label.shape)
    return (image - image.mean()) / image.std(), label


def _np_dice(pred: np.ndarray, label: np.ndarray) -> float:
    return 2 * float((pred & label).sum()) / max(1, int(pred.sum() + label.sum()))


def test_learned_threshold_is_the_brute_force_optimum() -> None:
    vols = [(f"v{i}", *_volume(i)) for i in range(4)]
    base = learn_threshold(vols)
    step = CANDIDATES[1] - CANDIDATES[0]
    grid = CANDIDATES[::10]
    brute = [np.mean([_np_dice(im > t, lab) for _, im, lab in vols]) for t in grid]
    assert base.train_dice >= max(brute) - 1e-9
    assert base.train_dice == pytest.approx(
        np.mean([dice(base.predict(im), lab) for _, im, lab in vols]), abs=1e-6
    )
    assert abs(base.threshold - grid[int(np.argmax(brute))]) <= 10 * step + 0.5
    assert base.train_volumes == ["v0", "v1", "v2", "v3"]


def test_threshold_transfers_to_unseen_volumes() -> None:
    base = learn_threshold([(f"v{i}", *_volume(i)) for i in range(4)])
    image, label = _volume(99)
    assert dice(base.predict(image), label) > 0.6
    assert dice(base.predict(image), label) > dice(image > CANDIDATES[0], label)


def test_no_training_volume_is_an_error() -> None:
    with pytest.raises(ValueError, match="no training volume"):
        learn_threshold([])
