"""The dataloader contract the user asked for: real batches from the real pipeline, on a dataset
with a Z=5 volume, checked against the plan (shape, dtype, label values, patch size)."""

from __future__ import annotations

from pathlib import Path

import pytest

from minivess.keys import Keys
from minivess.training.config import TrainConfig
from minivess.training.data import datalist, train_loader, usable_pairs, volumes_per_batch
from minivess.training.transforms import samples_per_volume


def _check_batches(data_dir: Path, plan, cfg: TrainConfig, epochs: int = 2) -> int:
    import torch

    pairs = usable_pairs(data_dir)
    assert "mv03" in {p.name for p in pairs}  # the Z=5 volume is in play
    loader, ds = train_loader(datalist(pairs, [p.name for p in pairs]), plan, cfg)
    spv = samples_per_volume(plan, cfg)
    n_batches = 0
    for epoch in range(epochs):
        ds.transform.set_random_state(seed=epoch)
        for batch in loader:
            image, label = batch[Keys.IMAGE.value], batch[Keys.LABEL.value]
            n = image.shape[0]
            assert 1 <= n <= plan.batch_size and n % spv == 0
            assert tuple(image.shape) == (n, 1, *plan.patch_size)
            assert tuple(label.shape) == (n, 1, *plan.patch_size)
            assert image.dtype == torch.float32 and label.dtype == torch.float32
            assert set(torch.unique(label).tolist()) <= {0.0, 1.0}
            assert torch.isfinite(image).all()
            for axis, size in enumerate(plan.patch_size):
                assert size % plan.divisors[axis] == 0
            n_batches += 1
    return n_batches


def test_hand_plan_batches_match_plan(tiny_data: Path, plan_factory) -> None:
    plan = plan_factory()
    cfg = TrainConfig(samples_per_volume=2)
    n = _check_batches(tiny_data, plan, cfg)
    assert volumes_per_batch(plan, cfg) == 1
    assert n == 2 * 6  # one volume (two patches) per batch, six volumes, two epochs


def test_patch_deeper_than_thin_volume_is_padded_not_crashing(
    tiny_data: Path, plan_factory
) -> None:
    plan = plan_factory(patch_size=(16, 16, 8), sw_roi=(16, 16, 8), batch_size=4)
    _check_batches(tiny_data, plan, TrainConfig(samples_per_volume=3), epochs=1)


def test_planner_plan_batches_match_plan(tiny_data: Path) -> None:
    from minivess.planning import make_plan

    plan = make_plan(tiny_data, "dynunet")
    assert plan.patch_size[2] <= 5  # the planner respects the Z=5 volume
    _check_batches(tiny_data, plan, TrainConfig(), epochs=1)


def test_bad_dataset_is_refused_before_the_first_batch(tmp_path: Path) -> None:
    from minivess.errors import DataError

    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "mv01.nii.gz").write_bytes(b"garbage")
    with pytest.raises(DataError):
        usable_pairs(tmp_path)


def test_enabled_resampling_changes_the_grid_not_the_contract(
    tiny_data: Path, plan_factory
) -> None:
    from minivess.training.config import ResamplingConfig
    from minivess.training.transforms import eval_transforms

    res = ResamplingConfig(enabled=True, method="spacing", target_spacing=(2.0, 2.0, 2.0))
    pairs = usable_pairs(tiny_data)
    item = eval_transforms(res)(datalist(pairs, ["mv01"])[0])
    assert tuple(item[Keys.IMAGE.value].shape) == (1, 16, 16, 12)  # 32×32×12 at (1, 1, 2) µm
    _check_batches(tiny_data, plan_factory(), TrainConfig(resampling=res), epochs=1)
