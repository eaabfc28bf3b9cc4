"""DVC: version the data, then pull it into a fresh clone; files must match by hash."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from minivess.errors import DataError
from minivess.settings import load_settings
from minivess.versioning.dvc import data_hash, pull_data, version_data

pytestmark = pytest.mark.slow


def _tree_hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _dataset(ws: Path) -> Path:
    data = ws / "data"
    (data / "raw").mkdir(parents=True)
    (data / "seg").mkdir()
    for i in range(3):
        (data / "raw" / f"mv0{i}.nii.gz").write_bytes(bytes(range(256)) * (i + 1))
        (data / "seg" / f"mv0{i}_y.nii.gz").write_bytes(b"label" * (i + 3))
    return data


def _fresh_clone(project: Path, dst: Path) -> Path:
    """What `git clone` of a DVC project gives: the .dvc file and config, no data, no cache."""
    (dst / ".dvc").mkdir(parents=True)
    shutil.copy(project / ".dvc" / "config", dst / ".dvc" / "config")
    for f in project.glob("*.dvc"):
        if f.is_file():
            shutil.copy(f, dst / f.name)
    return dst


def _roundtrip(tmp_path: Path, environ: dict[str, str]) -> None:
    ws = tmp_path / "ws"
    data = _dataset(ws)
    settings = load_settings(ws, environ=environ)
    version = version_data(data, settings)
    assert version.data_hash.endswith(".dir")
    assert data_hash(ws / "data.dvc") == version.data_hash

    clone = _fresh_clone(ws, tmp_path / "clone")
    assert not (clone / "data").exists()
    pull_data(clone, settings)
    assert _tree_hashes(clone / "data") == _tree_hashes(data)


def test_push_then_pull_into_fresh_clone_local_remote(tmp_path: Path) -> None:
    _roundtrip(tmp_path, environ={})
    assert any((tmp_path / "ws" / "dvc-remote").rglob("*")), "local remote holds the objects"


def test_push_then_pull_into_fresh_clone_s3_remote(
    tmp_path: Path, moto_endpoint: str, s3_bucket: str
) -> None:
    import boto3

    _roundtrip(
        tmp_path,
        environ={"MINIVESS_S3_BUCKET": s3_bucket, "MINIVESS_S3_ENDPOINT_URL": moto_endpoint},
    )
    keys = boto3.client("s3", endpoint_url=moto_endpoint).list_objects_v2(Bucket=s3_bucket)
    assert all(o["Key"].startswith("dvc/") for o in keys["Contents"])


def test_changed_data_changes_the_hash(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    data = _dataset(ws)
    settings = load_settings(ws, environ={})
    first = version_data(data, settings).data_hash
    (data / "raw" / "mv09.nii.gz").write_bytes(b"new volume")
    assert version_data(data, settings).data_hash != first


def test_versioning_data_outside_the_project_is_refused(tmp_path: Path) -> None:
    data = _dataset(tmp_path / "ws")
    with pytest.raises(DataError, match="not inside the DVC project"):
        version_data(data, load_settings(tmp_path, environ={}), project=tmp_path / "elsewhere")
