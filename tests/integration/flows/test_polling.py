"""New data triggers retraining: the polling path end to end, and the event path's trigger."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow


def test_poll_runs_data_flow_and_training_chain_only_when_the_dvc_hash_changes(
    prefect_harness: None, tiny_experiment: Path, tmp_path: Path, mlflow_db
) -> None:
    from minivess.data.synth import synthesize
    from minivess.orchestration.polling import poll_data_flow
    from minivess.settings import load_settings
    from minivess.versioning.dvc import version_data

    raw = yaml.safe_load(tiny_experiment.read_text())
    raw["deploy"]["enabled"] = False
    tiny_experiment.write_text(yaml.safe_dump(raw))
    ws = tmp_path / "ws"
    data_dir = ws / "data"
    synthesize(data_dir, scale="small", n_volumes=4, seed=5, progress=False)
    settings = load_settings(ws, environ={})
    mlflow_db(settings)
    version_data(data_dir, settings)

    kwargs = {"data_dir": str(data_dir), "workspace": str(ws), "experiment": str(tiny_experiment)}
    first = poll_data_flow(**kwargs)
    assert first.changed and first.profile_changed
    assert first.chain is not None and first.chain.analysis.registered_uri.endswith("/1")
    assert first.chain.train.upstream_run_id == first.data_run_id

    again = poll_data_flow(**kwargs)
    assert not again.changed and again.chain is None

    synthesize(tmp_path / "new", scale="small", n_volumes=5, seed=5, progress=False)
    for sub, name in (("raw", "mv05.nii.gz"), ("seg", "mv05_y.nii.gz")):
        (data_dir / sub / name).write_bytes((tmp_path / "new" / sub / name).read_bytes())
    version_data(data_dir, settings)
    third = poll_data_flow(**kwargs, retrain=False)  # the chain itself was proven above
    assert third.changed and third.profile_changed and third.chain is None
    assert third.data_run_id != first.data_run_id


def test_data_changed_event_matches_the_data_deployment_trigger(
    prefect_harness: None, tmp_path: Path
) -> None:
    from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger

    from minivess.orchestration.polling import DATA_CHANGED_EVENT, emit_data_changed

    project = yaml.safe_load((Path(__file__).parents[3] / "prefect.yaml").read_text())
    [data] = [d for d in project["deployments"] if d["name"] == "data"]
    [trigger] = [DeploymentEventTrigger.model_validate(t) for t in data["triggers"]]
    data_dir = tmp_path / "lab-data"
    data_dir.mkdir()
    event = emit_data_changed(data_dir)
    assert event.event == DATA_CHANGED_EVENT
    assert event.event in trigger.expect
    assert trigger.match.includes([event.resource])
    assert event.resource["minivess.data_dir"] == str(data_dir.resolve())


def test_two_polled_datasets_do_not_retrigger_each_other(
    prefect_harness: None, tmp_path: Path, mlflow_db
) -> None:
    """The last polled hash is kept per dataset: polling B does not make A look changed."""
    from minivess.data.synth import synthesize
    from minivess.orchestration.polling import poll_data_flow, poll_key
    from minivess.settings import load_settings
    from minivess.versioning.dvc import version_data

    ws = tmp_path / "ws"
    settings = load_settings(ws, environ={})
    mlflow_db(settings)
    dirs = {}
    for name, seed in (("lab-a", 1), ("lab-b", 2)):
        dirs[name] = tmp_path / name / "data"
        synthesize(dirs[name], scale="small", n_volumes=3, seed=seed, progress=False)
        version_data(dirs[name], settings)
    assert poll_key(dirs["lab-a"]) != poll_key(dirs["lab-b"])

    def poll(name: str):
        return poll_data_flow(data_dir=str(dirs[name]), workspace=str(ws), retrain=False)

    first_a, first_b = poll("lab-a"), poll("lab-b")
    assert first_a.changed and first_a.profile_changed
    assert first_b.changed and first_b.profile_changed
    again_a, again_b = poll("lab-a"), poll("lab-b")
    assert not again_a.changed and not again_b.changed
