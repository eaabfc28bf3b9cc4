"""The data flow: MLflow run contents, the Prefect pointer, and the profile cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from minivess.tracking.contract import Artifact, Flow, Tag

pytestmark = pytest.mark.slow


def test_unchanged_data_is_a_cache_hit_and_changed_data_is_not(
    prefect_harness: None, tmp_path: Path, mlflow_db
) -> None:
    import mlflow

    from minivess.data.synth import synthesize
    from minivess.orchestration import common
    from minivess.orchestration.data_flow import data_flow
    from minivess.settings import load_settings

    ws = tmp_path / "ws"
    mlflow_db(load_settings(ws, environ={}))
    data_dir = tmp_path / "mydata"
    synthesize(data_dir, scale="small", n_volumes=3, seed=3, progress=False)

    first = data_flow(data_dir=str(data_dir), workspace=str(ws))
    second = data_flow(data_dir=str(data_dir), workspace=str(ws))
    assert not first.profile_cached
    assert second.profile_cached  # the Prefect task state is "Cached": no re-scan
    assert second.dataset_hash == first.dataset_hash

    synthesize(tmp_path / "more", scale="small", n_volumes=4, seed=4, progress=False)
    extra = next((tmp_path / "more" / "raw").glob("*.nii.gz"))
    (data_dir / "raw" / "mv99.nii.gz").write_bytes(extra.read_bytes())
    (data_dir / "seg" / "mv99_y.nii.gz").write_bytes(
        (tmp_path / "more" / "seg" / extra.name.replace(".nii.gz", "_y.nii.gz")).read_bytes()
    )
    third = data_flow(data_dir=str(data_dir), workspace=str(ws))
    assert not third.profile_cached
    assert third.dataset_hash != first.dataset_hash
    assert third.n_volumes == 4

    # The pointer is a convenience; the contract is the MLflow run.
    assert common.get_pointer(common.PROFILE_POINTER)["run_id"] == third.run_id
    client = mlflow.MlflowClient(load_settings(ws).tracking_uri)
    run = client.get_run(third.run_id)
    assert run.data.tags[Tag.FLOW.value] == Flow.DATA.value
    assert run.data.tags[Tag.DATASET_HASH.value] == third.dataset_hash
    stored = {f.path for f in client.list_artifacts(third.run_id, "profile")}
    assert {Artifact.PROFILE_JSON.value, Artifact.QC_REPORT.value} <= stored
    assert any(p.startswith(Artifact.QC_FIGURES.value) for p in stored)
