"""Target configs: the shipped ones load; bad ones fail on one line naming file, field and fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from minivess.errors import ConfigError
from minivess.launch.targets import Kind, TargetConfig, load_target


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "target.yaml"
    path.write_text(text)
    return path


def test_shipped_targets_load_with_their_kind(shipped: dict[str, TargetConfig]) -> None:
    for name, target in shipped.items():
        assert target.kind is Kind(name)
    assert shipped["spot"].use_spot and shipped["spot"].job_recovery is not None
    assert shipped["serve"].service is not None and shipped["serve"].job_recovery is None
    assert shipped["ssh"].pool is not None


def test_inline_secret_value_is_rejected_without_echoing_it(tmp_path: Path) -> None:
    path = _write(tmp_path, "kind: local\nsecrets:\n  HF_TOKEN: hf_sEcReT123456\n")
    with pytest.raises(ConfigError) as err:
        load_target(path)
    msg = str(err.value)
    assert str(path) in msg and "secrets" in msg and "HF_TOKEN" in msg
    assert "by name only" in msg
    assert "hf_sEcReT123456" not in msg


def test_secret_names_with_null_values_are_accepted(tmp_path: Path) -> None:
    path = _write(tmp_path, "kind: local\nsecrets:\n  HF_TOKEN: null\n  AWS_ACCESS_KEY_ID:\n")
    assert load_target(path).secrets == ["HF_TOKEN", "AWS_ACCESS_KEY_ID"]


def test_credential_in_envs_is_rejected(tmp_path: Path) -> None:
    path = _write(tmp_path, "kind: local\nenvs:\n  MLFLOW_TRACKING_PASSWORD: pw123456\n")
    with pytest.raises(
        ConfigError, match=r"envs\.MLFLOW_TRACKING_PASSWORD looks like a credential"
    ):
        load_target(path)
    path = _write(tmp_path, "kind: local\nenvs:\n  MLFLOW_TRACKING_URI: https://me:pw99@ml.lab\n")
    with pytest.raises(ConfigError, match="credentials embedded in a URL"):
        load_target(path)


def test_unknown_key_gets_did_you_mean(tmp_path: Path) -> None:
    path = _write(tmp_path, "kind: spot\nuse_spto: true\n")
    with pytest.raises(ConfigError, match="Did you mean 'use_spot'"):
        load_target(path)


def test_kind_rules(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="needs a `checkpoints:` section"):
        load_target(_write(tmp_path, "kind: spot\n"))
    with pytest.raises(ConfigError, match="needs a `pool:` section"):
        load_target(_write(tmp_path, "kind: ssh\n"))
    with pytest.raises(ConfigError, match="needs a `service:` section"):
        load_target(_write(tmp_path, "kind: serve\n"))


def test_unknown_target_name_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="local, serve, spot, ssh"):
        load_target("moon")
