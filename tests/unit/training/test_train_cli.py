"""``minivess train`` / ``evaluate``: user errors exit 2 with a one-line message naming the fix."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest


def _run_main(monkeypatch, args: list[str]) -> int:
    from minivess.cli import main

    monkeypatch.setattr(sys, "argv", ["minivess", *args])
    with pytest.raises(SystemExit) as exc:
        main()
    return int(exc.value.code or 0)


def test_unknown_loss_exits_2_naming_the_field(monkeypatch, capsys, tmp_path: Path) -> None:
    code = _run_main(monkeypatch, ["train", "--data", str(tmp_path), "--loss", "hinge"])
    err = capsys.readouterr().err
    assert code == 2
    assert "loss" in err and "dicece" in err


def test_dataset_without_volumes_is_refused(
    monkeypatch, capsys, tmp_path: Path, plan_factory
) -> None:
    plan = plan_factory().save(tmp_path / "plan.json")
    empty = tmp_path / "empty"
    empty.mkdir()
    code = _run_main(
        monkeypatch,
        [
            "train",
            "--data",
            str(empty),
            "--plan",
            str(plan),
            "--checkpoint-dir",
            str(tmp_path / "c"),
        ],
    )
    assert code == 2
    assert "error:" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()  # nothing written before the gate passed


def test_evaluate_missing_checkpoint_names_it(
    monkeypatch, capsys, tiny_data: Path, tmp_path: Path
) -> None:
    code = _run_main(
        monkeypatch,
        ["evaluate", "--data", str(tiny_data), "--checkpoints", str(tmp_path / "nope"),
         "--out", str(tmp_path / "eval")],
    )  # fmt: skip
    assert code == 2
    assert "nope/best.pt: checkpoint not found" in " ".join(capsys.readouterr().err.split())


def test_a_model_profile_given_by_path_plans_and_trains(
    monkeypatch, capsys, tiny_data: Path, tmp_path: Path
) -> None:
    """A researcher's own profile file, outside configs/, trains (it used to plan only)."""
    from minivess.resources import config_dir
    from minivess.training.checkpoint import load_model

    shipped = (config_dir() / "model_profiles" / "dynunet.yaml").read_text()
    own = tmp_path / "profiles" / "lab_dynunet.yaml"
    own.parent.mkdir()
    own.write_text(shipped.replace("name: dynunet", "name: lab_dynunet", 1))
    code = _run_main(
        monkeypatch,
        ["train", "--data", str(tiny_data), "--model", str(own), "--epochs", "1",
         "--checkpoint-dir", str(tmp_path / "ck")],
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    _, plan = load_model(tmp_path / "ck" / "best.pt")
    assert plan.model == "lab_dynunet"
