"""The dataset gate before training: the usable pairs, and every quarantined file with its reason.

Kept apart from the per-volume checks (:mod:`minivess.data.validation`): the gate runs the
profiler's scan, and the profiler runs those checks.
"""

from __future__ import annotations

import logging
from pathlib import Path

from minivess.data.profiler import profile_dataset
from minivess.data.schema import Rejected, VolumePair

log = logging.getLogger(__name__)


def validate_dataset(
    data_dir: Path | str,
    *,
    cache_dir: Path | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> tuple[list[VolumePair], list[Rejected]]:
    """The gate before training: the usable pairs of ``data_dir`` and the quarantined files.

    It runs the profiler's scan (so an unchanged, already profiled dataset is not read again)
    and logs each rejection with its reason.

    Returns:
        ``(usable pairs, rejected)``.

    Raises:
        DataError: when no volume is usable, with the first reasons and the fix.
    """
    profile = profile_dataset(data_dir, cache_dir=cache_dir, workers=workers, progress=progress)
    usable = [VolumePair(name=v.name, image=v.file, label=v.label_file) for v in profile.volumes]
    for item in profile.rejected:
        log.warning("quarantined %s: %s", item.file, item.reason)
    return usable, list(profile.rejected)
