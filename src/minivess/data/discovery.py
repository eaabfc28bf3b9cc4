"""Find image/label pairs in a data folder, whatever of the two accepted layouts it uses.

Accepted layouts (checked in this order):

* **MiniVess release**: ``raw/<name>.nii.gz`` images, ``seg/<name>_y.nii.gz`` labels,
  optional ``json/<name>.json`` metadata.
* **nnU-Net v2 / Medical Segmentation Decathlon**: ``imagesTr/`` and ``labelsTr/`` with a
  ``dataset.json``. Images are ``<case>_0000.nii.gz`` (nnU-Net; channel suffix) or
  ``<case>.nii.gz`` (Decathlon); labels are ``<case>.nii.gz``. When ``dataset.json`` has a
  ``training`` list (Decathlon), that list is used as is.

Only discovery lives here: no file is opened beyond listing folders and reading
``dataset.json``. Whether a file is a readable 3D NIfTI is :mod:`minivess.data.validation`'s job.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from minivess.data.schema import Rejected, VolumePair
from minivess.errors import DataError

log = logging.getLogger(__name__)

NIFTI_SUFFIXES = (".nii.gz", ".nii")
MINIVESS_IMAGES, MINIVESS_LABELS, MINIVESS_LABEL_SUFFIX = "raw", "seg", "_y"
NNUNET_IMAGES, NNUNET_LABELS, DATASET_JSON = "imagesTr", "labelsTr", "dataset.json"
#: Label classes assumed when the dataset declares none (binary segmentation).
DEFAULT_CLASSES = frozenset({0, 1})


def _stem(path: Path) -> str | None:
    """``mv01`` for ``mv01.nii.gz`` / ``mv01.nii``; None when the file is not NIfTI-named."""
    for suffix in NIFTI_SUFFIXES:
        if path.name.endswith(suffix):
            return path.name[: -len(suffix)]
    return None


def _listing(folder: Path) -> list[Path]:
    """Visible files of ``folder`` (broken links included, to be reported), sorted by name."""
    return sorted(
        p
        for p in folder.iterdir()
        if (p.is_file() or p.is_symlink()) and not p.name.startswith(".")
    )


def detect_layout(data_dir: Path) -> str:
    """``"minivess"`` or ``"nnunet"``; raises :class:`DataError` naming what was expected."""
    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: not a folder. Point DATA_DIR at your dataset folder.")
    if (data_dir / MINIVESS_IMAGES).is_dir():
        return "minivess"
    if (data_dir / NNUNET_IMAGES).is_dir():
        return "nnunet"
    raise DataError(
        f"{data_dir}: no known dataset layout. Expected raw/ + seg/ (MiniVess: raw/mv01.nii.gz, "
        "seg/mv01_y.nii.gz) or imagesTr/ + labelsTr/ + dataset.json (nnU-Net/Decathlon)."
    )


def _pair_by_name(
    images: dict[str, Path], labels: dict[str, Path], label_dir: Path
) -> tuple[list[VolumePair], list[Rejected]]:
    pairs, rejected = [], []
    for name, image in sorted(images.items()):
        label = labels.get(name)
        if label is None:
            rejected.append(
                Rejected(
                    file=str(image),
                    reason=f"no label: expected {label_dir.name}/ to hold the label of {name!r}",
                )
            )
            continue
        pairs.append(VolumePair(name=name, image=str(image), label=str(label)))
    for name in sorted(set(labels) - set(images)):
        rejected.append(Rejected(file=str(labels[name]), reason=f"label without image {name!r}"))
    return pairs, rejected


def _not_nifti(path: Path) -> Rejected:
    return Rejected(file=str(path), reason="not a NIfTI file name (expected .nii.gz or .nii)")


def _nifti_files(folder: Path, rejected: list[Rejected]) -> list[tuple[str, Path]]:
    """``(stem, path)`` of each NIfTI-named file of ``folder``; other files go to ``rejected``."""
    found = []
    for path in _listing(folder):
        stem = _stem(path)
        if stem is None:
            rejected.append(_not_nifti(path))
        else:
            found.append((stem, path))
    return found


def _discover_minivess(data_dir: Path) -> tuple[list[VolumePair], list[Rejected]]:
    rejected: list[Rejected] = []
    images = dict(_nifti_files(data_dir / MINIVESS_IMAGES, rejected))
    labels: dict[str, Path] = {}
    seg_dir = data_dir / MINIVESS_LABELS
    if seg_dir.is_dir():
        for stem, path in _nifti_files(seg_dir, rejected):
            labels[stem.removesuffix(MINIVESS_LABEL_SUFFIX)] = path
    pairs, missing = _pair_by_name(images, labels, seg_dir)
    return pairs, rejected + missing


def _read_dataset_json(data_dir: Path) -> dict:
    path = data_dir / DATASET_JSON
    if not path.is_file():
        return {}
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: not valid JSON ({err}). Fix or remove the file.") from None
    if not isinstance(meta, dict):
        raise DataError(f"{path}: expected a JSON object at the top level.")
    return meta


def _discover_nnunet(data_dir: Path) -> tuple[list[VolumePair], list[Rejected]]:
    meta = _read_dataset_json(data_dir)
    label_dir = data_dir / NNUNET_LABELS
    training = meta.get("training")
    if isinstance(training, list) and training and isinstance(training[0], dict):
        return _decathlon_list(data_dir, training)
    rejected: list[Rejected] = []
    images: dict[str, Path] = {}
    for stem, path in _nifti_files(data_dir / NNUNET_IMAGES, rejected):
        case, sep, channel = stem.rpartition("_")
        if sep and len(channel) == 4 and channel.isdigit():
            if channel != "0000":
                rejected.append(
                    Rejected(
                        file=str(path),
                        reason=f"extra input channel {channel}: minivess trains on one channel "
                        "(_0000); remove the file or merge channels",
                    )
                )
                continue
            stem = case
        images[stem] = path
    labels = dict(_nifti_files(label_dir, rejected)) if label_dir.is_dir() else {}
    pairs, missing = _pair_by_name(images, labels, label_dir)
    return pairs, rejected + missing


def _decathlon_list(
    data_dir: Path, training: list[dict]
) -> tuple[list[VolumePair], list[Rejected]]:
    pairs, rejected = [], []
    for item in training:
        image = data_dir / str(item.get("image", ""))
        label_rel = item.get("label")
        stem = _stem(image) or image.name
        if not image.is_file():
            rejected.append(
                Rejected(file=str(image), reason="listed in dataset.json but the file is missing")
            )
        elif not label_rel or not (data_dir / label_rel).is_file():
            rejected.append(
                Rejected(
                    file=str(image),
                    reason=f"no label: dataset.json names {label_rel!r}, which does not exist",
                )
            )
        else:
            pairs.append(VolumePair(name=stem, image=str(image), label=str(data_dir / label_rel)))
    return sorted(pairs, key=lambda p: p.name), rejected


def discover_pairs(data_dir: Path | str) -> tuple[list[VolumePair], list[Rejected]]:
    """Find the image/label pairs of ``data_dir`` (MiniVess or nnU-Net/Decathlon layout).

    Args:
        data_dir: the dataset folder (the one holding ``raw/`` or ``imagesTr/``).

    Returns:
        ``(pairs, rejected)``: pairs sorted by name, each with a label; ``rejected`` holds an
        image without a label, a label without an image, and non-NIfTI files, each with a
        one-line reason.

    Raises:
        DataError: ``data_dir`` is missing or has neither layout.

    Examples:
        >>> pairs, rejected = discover_pairs("data/minivess")  # doctest: +SKIP
        >>> pairs[0].name, pairs[0].label  # doctest: +SKIP
        ('mv01', 'data/minivess/seg/mv01_y.nii.gz')
    """
    root = Path(data_dir)
    layout = detect_layout(root)
    pairs, rejected = (_discover_minivess if layout == "minivess" else _discover_nnunet)(root)
    log.info(
        "discovery: %s layout in %s: %d pair(s), %d rejected",
        layout,
        root,
        len(pairs),
        len(rejected),
    )
    return pairs, rejected


def declared_classes(data_dir: Path | str) -> frozenset[int]:
    """Label values the dataset declares (``dataset.json`` ``labels``), else ``{0, 1}``.

    Both conventions are read: nnU-Net v2 ``{"background": 0, "vessel": 1}`` and Decathlon
    ``{"0": "background", "1": "vessel"}``.
    """
    root = Path(data_dir)
    if not (root / NNUNET_IMAGES).is_dir():
        return DEFAULT_CLASSES
    labels = _read_dataset_json(root).get("labels")
    if not isinstance(labels, dict) or not labels:
        return DEFAULT_CLASSES
    values: set[int] = set()
    for key, value in labels.items():
        for candidate in (value, key):
            if isinstance(candidate, int) or (isinstance(candidate, str) and candidate.isdigit()):
                values.add(int(candidate))
                break
            if isinstance(candidate, list):  # nnU-Net region labels: [1, 2]
                values.update(int(v) for v in candidate)
                break
    return frozenset(values) or DEFAULT_CLASSES
