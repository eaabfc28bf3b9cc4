"""Datasets and loaders: CacheDataset (runtime cache, plan's cache rate) + ThreadDataLoader.

The validation gate (:func:`minivess.data.gate.validate_dataset`) runs before anything is
loaded: bad volumes are quarantined with a reason and training goes on with the rest; a dataset
with no usable volume is refused with :class:`~minivess.errors.DataError`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from minivess.keys import Keys
from minivess.training.config import volumes_per_batch
from minivess.training.transforms import eval_transforms, train_transforms

if TYPE_CHECKING:
    from monai.data import CacheDataset, ThreadDataLoader

    from minivess.data.schema import VolumePair
    from minivess.planning.plan import TrainingPlan
    from minivess.training.config import ResamplingConfig, TrainConfig
    from minivess.training.distributed import DistContext

log = logging.getLogger(__name__)


def usable_pairs(data_dir: Path) -> list[VolumePair]:
    """The gate: validated image/label pairs of ``data_dir``, rejected ones logged with reasons.

    Raises:
        DataError: when no pair is usable (raised by the data layer, naming the directory).
    """
    from minivess.data.gate import validate_dataset

    pairs, rejected = validate_dataset(Path(data_dir))
    for bad in rejected:
        log.warning("data gate: quarantined %s: %s", bad.file, bad.reason)
    log.info("data gate: %d usable volume(s), %d rejected", len(pairs), len(rejected))
    return [p for p in pairs if p.label is not None]


def plan_gate(
    plan: TrainingPlan,
    pairs: list[VolumePair],
    data_dir: Path,
    resampling: ResamplingConfig | None = None,
) -> list[VolumePair]:
    """Check the plan against the data it trains on; the pairs to train on.

    * a plan made for other data (``plan.dataset_hash`` set and different from the data's
      content hash) is refused;
    * volumes the planner quarantined (``plan.quarantined_volumes``) are left out, logged;
    * a volume that the patch would pad but the plan does not list in ``padded_volumes`` is
      refused: padding is always announced (seed decision D2).

    Shapes come from the headers (no voxels are read), resampled to the target spacing when
    resampling is enabled, exactly as the planner saw them.

    Raises:
        PlanError: one line naming the volume or the hashes and the fix.
    """
    from minivess.data.profiler import dataset_content_hash
    from minivess.data.validation import check_header
    from minivess.errors import PlanError

    if plan.dataset_hash:
        actual = dataset_content_hash(data_dir)
        if actual != plan.dataset_hash:
            raise PlanError(
                f"plan was made for dataset {plan.dataset_hash[:12]}, but {data_dir} is "
                f"{actual[:12]}: re-plan with 'minivess plan --data {data_dir}' "
                "(the data changed or the plan belongs to other data)"
            )
    quarantined = set(plan.quarantined_volumes)
    if quarantined:
        log.warning(
            "plan: %d volume(s) quarantined by the planner (below the network's minimum patch): %s",
            len(quarantined),
            ", ".join(sorted(quarantined)),
        )
    keep = [p for p in pairs if p.name not in quarantined]
    target = resampling.target_spacing if resampling and resampling.enabled else None
    announced = set(plan.padded_volumes)
    for pair in keep:
        info = check_header(pair.image)
        shape: tuple[int, ...] = tuple(info.shape)
        if target is not None:
            shape = tuple(max(1, round(shape[a] * info.spacing[a] / target[a])) for a in range(3))
        short = [a for a in range(3) if shape[a] < plan.patch_size[a]]
        if short and pair.name not in announced:
            raise PlanError(
                f"{pair.name} {tuple(shape)} is smaller than the patch "
                f"{tuple(plan.patch_size)} and would be padded, but the plan does not list "
                "it in padded_volumes: re-plan (minivess plan) or choose a smaller patch"
            )
    if not keep:
        raise PlanError(f"{data_dir}: the plan quarantines every usable volume; re-plan")
    return keep


def datalist(pairs: list[VolumePair], names: list[str]) -> list[dict[str, Any]]:
    """MONAI data dicts ``{image, label, name}`` of the pairs called ``names``, in that order."""
    by_name = {p.name: p for p in pairs}
    return [
        {Keys.IMAGE.value: by_name[n].image, Keys.LABEL.value: by_name[n].label, Keys.NAME.value: n}
        for n in names
    ]


def train_loader(
    items: list[dict[str, Any]],
    plan: TrainingPlan,
    cfg: TrainConfig,
    ctx: DistContext | None = None,
    progress: bool = False,
) -> tuple[ThreadDataLoader, CacheDataset]:
    """The training loader over ``items`` (this rank's partition when distributed).

    Under DDP the item list is partitioned (``monai.data.partition_dataset``, padded to equal
    length), so each rank caches only its own share and all ranks take the same number of steps.
    Each batch: ``image``/``label`` of shape (n, 1, *plan.patch_size) with
    ``n <= plan.batch_size``.
    """
    from monai.data import CacheDataset, ThreadDataLoader, partition_dataset

    if ctx is not None and ctx.distributed:
        items = partition_dataset(
            items, num_partitions=ctx.world_size, shuffle=False, even_divisible=True
        )[ctx.rank]
    ds = CacheDataset(
        items,
        transform=train_transforms(plan, cfg),
        cache_rate=plan.cache_rate,
        num_workers=max(1, plan.num_workers),
        runtime_cache=True,
        progress=progress,
        # No deep copy of the cached volume per draw: every random step after the cache
        # (crop, flips, rot90, intensity scale/shift) returns new tensors or views that the
        # collate stacks into new memory; nothing writes into the cached tensors.
        copy_cache=False,
    )
    loader = ThreadDataLoader(
        ds, batch_size=volumes_per_batch(plan, cfg), shuffle=True, num_workers=0, buffer_size=1
    )
    return loader, ds


def eval_dataset(
    items: list[dict[str, Any]], resampling: ResamplingConfig, cache_rate: float = 1.0
) -> CacheDataset:
    """Whole, normalised volumes for sliding-window validation (runtime-cached)."""
    from monai.data import CacheDataset

    return CacheDataset(
        items,
        transform=eval_transforms(resampling),
        cache_rate=cache_rate,
        runtime_cache=True,
        progress=False,
    )
