"""Deterministic k-fold splits: the same seed and case names give the same folds anywhere."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from minivess.errors import DataError


class Split(BaseModel):
    """The train/validation case names of one fold."""

    model_config = ConfigDict(frozen=True)

    fold: int
    n_folds: int
    seed: int
    train: list[str]
    val: list[str]


def kfold_split(names: list[str], n_folds: int, fold: int, seed: int) -> Split:
    """Split case ``names`` into ``n_folds`` folds and return fold ``fold`` as validation.

    Names are sorted first, then permuted with ``numpy.random.default_rng(seed)``, then cut into
    ``n_folds`` near-equal parts, so the split depends only on the set of names and the seed.

    Raises:
        DataError: when there are fewer usable volumes than folds.

    Example:
        >>> kfold_split(["a", "b", "c", "d"], n_folds=2, fold=0, seed=0).val
        ['a', 'c']
    """
    import numpy as np

    unique = sorted(set(names))
    if len(unique) < n_folds:
        raise DataError(
            f"{len(unique)} usable volumes cannot make {n_folds} folds; lower n_folds "
            f"(--set training.n_folds=...) or add volumes."
        )
    if not 0 <= fold < n_folds:
        raise DataError(f"fold {fold} out of range for n_folds={n_folds}; use 0..{n_folds - 1}.")
    order = np.random.default_rng(seed).permutation(len(unique))
    parts = np.array_split(order, n_folds)
    val = sorted(unique[i] for i in parts[fold])
    train = sorted(n for n in unique if n not in set(val))
    return Split(fold=fold, n_folds=n_folds, seed=seed, train=train, val=val)
