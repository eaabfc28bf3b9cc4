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
