"""k-fold splits are deterministic by seed and partition the cases."""

from __future__ import annotations

import pytest

from minivess.errors import DataError
from minivess.training.splits import kfold_split

NAMES = [f"mv{i:02d}" for i in range(1, 11)]


def test_same_seed_same_split_regardless_of_input_order() -> None:
    a = kfold_split(NAMES, 3, 1, seed=7)
    b = kfold_split(list(reversed(NAMES)), 3, 1, seed=7)
    assert a == b


def test_folds_partition_the_cases() -> None:
    vals = [kfold_split(NAMES, 3, k, seed=0).val for k in range(3)]
    flat = [n for v in vals for n in v]
    assert sorted(flat) == NAMES
    for k in range(3):
        s = kfold_split(NAMES, 3, k, seed=0)
        assert not set(s.train) & set(s.val)
        assert sorted(s.train + s.val) == NAMES


def test_different_seed_changes_split() -> None:
    assert kfold_split(NAMES, 3, 0, seed=0).val != kfold_split(NAMES, 3, 0, seed=1).val


def test_too_few_volumes_is_a_clear_error() -> None:
    with pytest.raises(DataError, match="2 usable volumes cannot make 3 folds"):
        kfold_split(["a", "b"], 3, 0, seed=0)
