"""The README's main job: `minivess experiment` from an arbitrary directory, flows 1 -> 4."""

from __future__ import annotations

import json

import pytest

from minivess.tracking.contract import EXPERIMENTS, REGISTERED_MODEL, Flow, Tag
from tests.fixtures.main_job import GROUP, MAIN_JOB_CAPACITY_ROUNDS, MainJob

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group(GROUP)]


def test_experiment_runs_the_whole_chain_from_any_directory(main_job: MainJob) -> None:
    import mlflow

    out, cwd = main_job.output, main_job.cwd
    ws = cwd / "workspace"
    assert f"workspace: {ws}" in out
    assert "mlflow ui --backend-store-uri" in out
    assert "qc_report.html" in out and (ws / "profile" / "qc_report.html").is_file()
    assert f"models:/{REGISTERED_MODEL}/1" in out
    assert "| loss | fold 0 |" in out  # the comparison table

    client = mlflow.MlflowClient(f"sqlite:///{ws / 'mlflow.db'}")
    runs = {}
    for flow in Flow:
        exp = client.get_experiment_by_name(EXPERIMENTS[flow])
        [run] = client.search_runs([exp.experiment_id])
        assert run.data.tags[Tag.FLOW.value] == flow.value
        runs[flow] = run
    up = Tag.UPSTREAM_RUN_ID.value
    assert runs[Flow.TRAIN].data.tags[up] == runs[Flow.DATA].info.run_id
    assert runs[Flow.ANALYSIS].data.tags[up] == runs[Flow.TRAIN].info.run_id
    assert runs[Flow.DEPLOY].data.tags[up] == runs[Flow.ANALYSIS].info.run_id
    [version] = client.search_model_versions(f"name = '{REGISTERED_MODEL}'")
    assert version.tags[Tag.STATUS.value] == "deployed"
    # one epoch cannot beat the learned threshold: registered with the warning, forced through
    assert "does not beat the threshold baseline" in version.tags[Tag.BELOW_BASELINE.value]
    assert "baseline-threshold" in out and "WARNING" in out
    assert "endpoint" not in version.tags  # the smoke-test server was stopped
    champion = client.get_model_version_by_alias(REGISTERED_MODEL, "champion")
    assert champion.version == version.version
    assert (ws / "sky" / "serve.yaml").is_file()
    # The experiment's deploy.capacity_rounds (1 here: the fixture's) reached the capacity plan.
    capacity = json.loads((ws / "deploy" / "build" / "bundle" / "capacity.json").read_text())
    assert {f["runs"] for f in capacity["figures"]} == {MAIN_JOB_CAPACITY_ROUNDS}
    assert {f["name"] for f in capacity["figures"]} >= {"eager-cpu", "torch-cpu", "onnx-cpu"}
    # Every flow's artifacts went where the settings say: nothing but the workspace in the cwd
    # (no <cwd>/mlruns), and MLflow's artifact roots are inside the workspace.
    assert sorted(p.name for p in cwd.iterdir()) == ["workspace"]
    for flow in Flow:
        root = client.get_experiment_by_name(EXPERIMENTS[flow]).artifact_location
        assert root.startswith((ws / "mlartifacts").as_uri()), root
