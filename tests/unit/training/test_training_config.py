"""TrainConfig / GridConfig: strict, defaults that keep scientific choices with the user."""

from __future__ import annotations

import pytest

from minivess.errors import ConfigError
from minivess.training.config import LossName, TrainConfig, expand_grid


def test_resampling_is_off_by_default() -> None:
    assert TrainConfig().resampling.enabled is False


def test_resampling_enabled_without_target_is_refused() -> None:
    with pytest.raises(ValueError, match="target_spacing"):
        TrainConfig.model_validate({"resampling": {"enabled": True, "method": "spacing"}})


def test_fold_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="fold 3"):
        TrainConfig(fold=3, n_folds=3)


def test_grid_expands_loss_by_fold_with_distinct_checkpoint_dirs() -> None:
    cells = expand_grid(
        {"losses": ["dicece", "cldice"], "folds": [0, 1, 2], "checkpoint_dir": "s3://b/exp"}
    )
    assert [(c.loss, c.fold) for c in cells] == [
        (LossName.DICECE, 0), (LossName.DICECE, 1), (LossName.DICECE, 2),
        (LossName.CLDICE, 0), (LossName.CLDICE, 1), (LossName.CLDICE, 2),
    ]  # fmt: skip
    assert len({c.checkpoint_dir for c in cells}) == 6
    assert cells[3].checkpoint_dir == "s3://b/exp/cldice-fold0"


def test_grid_without_axes_is_one_cell() -> None:
    cells = expand_grid({"loss": "focal", "fold": 1})
    assert [(c.loss, c.fold) for c in cells] == [(LossName.FOCAL, 1)]


def test_unknown_grid_key_names_field_and_suggests() -> None:
    with pytest.raises(ConfigError, match=r"training.yaml: unknown field 'loses'.*'losses'"):
        expand_grid({"loses": ["dice"]}, origin="training.yaml")


def test_unknown_loss_is_refused() -> None:
    with pytest.raises(ConfigError, match="losses"):
        expand_grid({"losses": ["hinge"]})


def test_fold_outside_n_folds_in_grid_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"folds \[5\]"):
        expand_grid({"folds": [0, 5], "n_folds": 3})


def test_resampling_defaults_come_from_the_data_config(tmp_path, monkeypatch) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "defaults.yaml").write_text(
        "resampling:\n  enabled: true\n  method: spacing\n  target_spacing: [1.0, 1.0, 2.0]\n"
    )
    monkeypatch.setenv("MINIVESS_CONFIG_DIR", str(tmp_path))
    cfg = TrainConfig()
    assert cfg.resampling.enabled and cfg.resampling.target_spacing == (1.0, 1.0, 2.0)
