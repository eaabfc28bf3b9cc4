"""Checkpoint files: atomic local writes, clear errors, models rebuilt from embedded plans."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from minivess.training import checkpoint as ckpt


def test_local_round_trip(tmp_path: Path) -> None:
    import torch

    uri = tmp_path / "run" / "last.pt"
    ckpt.save_state({"w": torch.arange(4.0), "epoch": 3, "plan": "{}"}, uri)
    state = ckpt.load_state(uri)
    assert state["epoch"] == 3
    assert torch.equal(state["w"], torch.arange(4.0))


def test_failed_write_keeps_previous_version(tmp_path: Path, monkeypatch) -> None:
    uri = tmp_path / "last.pt"
    ckpt.write_bytes(uri, b"good")

    # A crash mid-write (disk full, preemption) cannot be produced on demand: make fsync fail.
    def boom(fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        ckpt.write_bytes(uri, b"half-written")
    assert uri.read_bytes() == b"good"
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temp file left behind


def test_missing_checkpoint_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ckpt.CheckpointError, match=r"nope\.pt: checkpoint not found"):
        ckpt.load_state(tmp_path / "nope.pt")


def test_corrupt_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "best.pt"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(ckpt.CheckpointError, match="not a readable minivess checkpoint"):
        ckpt.load_state(bad)


def test_run_directory_resolves_to_best() -> None:
    assert ckpt.resolve("s3://b/run") == "s3://b/run/best.pt"
    assert ckpt.resolve("/x/run/last.pt") == "/x/run/last.pt"


def test_load_model_rebuilds_from_embedded_plan(tmp_path: Path, plan_factory) -> None:
    import torch

    from minivess.models import build_model

    plan = plan_factory()
    net = build_model(plan, in_channels=1, out_channels=2)
    ckpt.save_state(
        {"plan": plan.model_dump_json(), "model": net.state_dict()}, tmp_path / "best.pt"
    )
    model, loaded_plan = ckpt.load_model(tmp_path)
    assert loaded_plan == plan
    x = torch.randn(1, 1, *plan.patch_size)
    net.eval()
    with torch.no_grad():
        assert torch.allclose(model(x), net(x))


def _profile_with_filters(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, filters: int) -> None:
    """The shipped configs, with dynunet's base_filters edited (as a researcher would)."""
    import shutil

    import yaml

    from minivess.config import CONFIG_DIR_ENV, config_dir

    configs = tmp_path / f"configs-{filters}"
    shutil.copytree(config_dir(), configs)
    path = configs / "model_profiles" / "dynunet.yaml"
    raw = yaml.safe_load(path.read_text())
    raw["network"]["params"]["base_filters"] = filters
    path.write_text(yaml.safe_dump(raw))
    monkeypatch.setenv(CONFIG_DIR_ENV, str(configs))


def test_checkpoint_rebuilds_alone_after_the_profile_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, plan_factory
) -> None:
    from minivess.models import build_model
    from minivess.planning.planner import plan_network
    from minivess.planning.profiles import load_model_profile

    plan = plan_factory(network=plan_network(load_model_profile("dynunet")))
    assert plan.network is not None and plan.network.params["base_filters"] == 16
    net = build_model(plan)
    ckpt.save_state({"plan": plan.model_dump_json(), "model": net.state_dict()}, tmp_path / "a.pt")

    _profile_with_filters(tmp_path, monkeypatch, 8)  # base_filters 16 -> 8 in the profile
    model, loaded = ckpt.load_model(tmp_path / "a.pt")  # from the checkpoint alone
    assert loaded == plan
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in net.parameters())
    # The plan's hash covers the network params: a new plan for the new profile differs.
    replanned = plan_factory(network=plan_network(load_model_profile("dynunet")))
    assert replanned.plan_hash != plan.plan_hash
    assert plan.differences(replanned) == ["network.params.base_filters"]


def test_a_checkpoint_that_no_longer_fits_is_a_checkpoint_error_naming_the_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, plan_factory
) -> None:
    from minivess.models import build_model

    plan = plan_factory()  # no network block: it takes the profile's (as older plans did)
    net = build_model(plan)
    ckpt.save_state({"plan": plan.model_dump_json(), "model": net.state_dict()}, tmp_path / "a.pt")
    _profile_with_filters(tmp_path, monkeypatch, 8)
    with pytest.raises(ckpt.CheckpointError, match=r"a\.pt: weights do not fit.*predates"):
        ckpt.load_model(tmp_path / "a.pt")


def test_a_plan_of_another_schema_version_is_refused(tmp_path: Path, plan_factory) -> None:
    import json

    raw = json.loads(plan_factory().model_dump_json())
    raw["schema_version"] = 1
    ckpt.save_state({"plan": json.dumps(raw), "model": {}}, tmp_path / "old.pt")
    with pytest.raises(ckpt.CheckpointError, match=r"old\.pt: embedded plan.*schema_version"):
        ckpt.load_model(tmp_path / "old.pt")
