from __future__ import annotations

from pathlib import Path

import pytest

from minivess.errors import ConfigError
from minivess.serving.settings import Backend, ServeSettings, load_serve_settings


def test_precedence_overrides_then_env_then_yaml(tmp_path: Path) -> None:
    yaml_file = tmp_path / "serve.yaml"
    yaml_file.write_text("backend: torch\nmax_voxels: 1000\nsw_batch_size: 2\n")
    env = {"MINIVESS_SERVE_MAX_VOXELS": "2000", "MINIVESS_SERVE_CONFIG": str(yaml_file)}
    s = load_serve_settings(environ=env, sw_batch_size=4)
    assert s.backend is Backend.TORCH  # from YAML (named by the env variable)
    assert s.max_voxels == 2000  # env beats YAML
    assert s.sw_batch_size == 4  # argument beats both


def test_unknown_yaml_key_names_file_and_suggests(tmp_path: Path) -> None:
    yaml_file = tmp_path / "serve.yaml"
    yaml_file.write_text("max_voxel: 10\n")
    with pytest.raises(ConfigError, match=r"serve\.yaml.*max_voxel.*Did you mean 'max_voxels'"):
        load_serve_settings(yaml_file, environ={})


def test_bad_env_value_names_the_variable() -> None:
    with pytest.raises(ConfigError, match=r"MINIVESS_SERVE_\*.*backend"):
        load_serve_settings(environ={"MINIVESS_SERVE_BACKEND": "tensorrt"})


def test_env_round_trip(tmp_path: Path) -> None:
    s = ServeSettings(
        model_path=tmp_path, backend=Backend.TORCH, auth_token_env="TOK", sw_overlap=0.5
    )
    assert load_serve_settings(environ=s.to_env()) == s


def test_token_travels_by_name_only() -> None:
    s = ServeSettings(auth_token_env="MY_TOKEN")
    assert "MY_TOKEN" in s.to_env().values()
    assert s.auth_token({"MY_TOKEN": "s3cret"}) == "s3cret"
    assert "s3cret" not in str(s.to_env())
    with pytest.raises(ConfigError, match="MY_TOKEN, which is unset"):
        s.auth_token({})
    with pytest.raises(ConfigError, match="NAME of the variable"):
        load_serve_settings(environ={}, auth_token_env="Bearer abc.def")
    assert ServeSettings().auth_token({}) is None


def test_missing_model_path_says_how_to_set_it() -> None:
    with pytest.raises(ConfigError, match="MINIVESS_SERVE_MODEL_PATH"):
        ServeSettings().require_model_path()


def test_serve_with_nothing_to_serve_says_the_three_ways_in_one_line(tmp_path: Path) -> None:
    """`minivess serve` in a fresh folder: no --model-uri, no MINIVESS_SERVE_MODEL_PATH, no
    registry in the workspace (the champion fallback has nothing to ask)."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith(("MINIVESS_", "MLFLOW_"))}
    proc = subprocess.run(
        [sys.executable, "-m", "minivess", "serve"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert "no --model-uri, no MINIVESS_SERVE_MODEL_PATH" in lines[0]
    assert "minivess experiment" in lines[0] and "@champion" in lines[0]
    assert not (tmp_path / "workspace" / "mlflow.db").exists()  # nothing was created
