"""The dataloader contract the user asked for: real batches from the real pipeline, on a dataset
with a Z=5 volume, checked against the plan (shape, dtype, label values, patch size)."""

from __future__ import annotations

from pathlib import Path

import pytest

from minivess.errors import PlanError
from minivess.keys import Keys
from minivess.training.config import TrainConfig
from minivess.training.data import (
    datalist,
    plan_gate,
    train_loader,
    usable_pairs,
    volumes_per_batch,
)
from minivess.training.transforms import samples_per_volume


def _check_batches(data_dir: Path, plan, cfg: TrainConfig, epochs: int = 2) -> int:
    import torch

    pairs = plan_gate(plan, usable_pairs(data_dir), data_dir, cfg.resampling)
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


def test_the_estimates_batch_count_is_the_real_loaders(tiny_data: Path, plan_factory) -> None:
    """launch's time estimate counts ceil(volumes / volumes_per_batch) steps an epoch: the
    number of batches the real loader yields (batch 4 of 2 patches a volume: 2 volumes)."""
    import math

    plan = plan_factory(batch_size=4)
    cfg = TrainConfig(samples_per_volume=2)
    pairs = plan_gate(plan, usable_pairs(tiny_data), tiny_data, cfg.resampling)
    loader, _ = train_loader(datalist(pairs, [p.name for p in pairs]), plan, cfg)
    assert volumes_per_batch(plan, cfg) == 2
    assert len(list(loader)) == math.ceil(len(pairs) / volumes_per_batch(plan, cfg)) == 3


def test_patch_deeper_than_thin_volume_is_padded_not_crashing(
    tiny_data: Path, plan_factory
) -> None:
    plan = plan_factory(
        patch_size=(16, 16, 8),
        sw_roi=(16, 16, 8),
        batch_size=4,
        padded_volumes=["mv03", "mv06"],  # Z=5 and Z=7 < 8: announced, as the planner does
    )
    _check_batches(tiny_data, plan, TrainConfig(samples_per_volume=3), epochs=1)


def test_unannounced_padding_fails_the_gate_in_one_line(tiny_data: Path, plan_factory) -> None:
    """A patch deeper than mv03 (Z=5) with an empty padded_volumes is refused, naming it."""
    plan = plan_factory(patch_size=(16, 16, 8), sw_roi=(16, 16, 8))
    with pytest.raises(PlanError, match=r"mv03 \(32, 32, 5\) is smaller than the patch") as err:
        plan_gate(plan, usable_pairs(tiny_data), tiny_data)
    assert "\n" not in str(err.value) and "padded_volumes" in str(err.value)


def test_plan_for_other_data_fails_the_gate(tiny_data: Path, plan_factory) -> None:
    from minivess.planning import make_plan

    plan = make_plan(tiny_data, "dynunet")
    assert plan.dataset_hash and plan_gate(plan, usable_pairs(tiny_data), tiny_data)
    stale = plan.model_copy(update={"dataset_hash": "0" * 64})
    with pytest.raises(PlanError, match=r"plan was made for dataset 000000000000, but .* re-plan"):
        plan_gate(stale, usable_pairs(tiny_data), tiny_data)


def test_quarantined_volumes_are_left_out(tiny_data: Path, plan_factory) -> None:
    plan = plan_factory(quarantined_volumes=["mv02"])
    names = {p.name for p in plan_gate(plan, usable_pairs(tiny_data), tiny_data)}
    assert "mv02" not in names and len(names) == 5


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
