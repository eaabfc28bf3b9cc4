"""Every section of an experiment file has a schema: a typo fails at load, naming the file and
the field with a "did you mean", before Prefect starts or anything is written."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from minivess.config import CONFIG_DIR_ENV, config_dir
from minivess.errors import ConfigError
from minivess.experiment import load_experiment


def _experiment(tmp_path: Path, **changes) -> Path:
    raw = yaml.safe_load((config_dir() / "experiments" / "default.yaml").read_text())
    for dotted, value in changes.items():
        node = raw
        *parents, last = dotted.split("__")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    path = tmp_path / "my-experiment.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize(
    ("changes", "field", "hint"),
    [
        ({"trainng": {"epochs": 2}}, "trainng", "training"),
        ({"training__epoch": 2}, "training.epoch", "epochs"),
        ({"training__losses": ["dicece"], "training__fodls": [0]}, "training.fodls", "folds"),
        ({"plan__batch_sise": 2}, "plan.batch_sise", "batch_size"),
        ({"data__synth_scal": "small"}, "data.synth_scal", "synth_scale"),
        ({"deploy__backnd": "onnx"}, "deploy.backnd", "backend"),
        ({"model": "dynunett"}, "model", "dynunet"),
        ({"training__resampling": {"enabeld": True}}, "training.resampling.enabeld", "enabled"),
        ({"data__test_dri": None}, "data.test_dri", "test_dir"),
    ],
)
def test_a_typo_in_each_section_names_the_file_the_field_and_the_fix(
    tmp_path: Path, changes: dict, field: str, hint: str
) -> None:
    path = _experiment(tmp_path, **changes)
    with pytest.raises(ConfigError) as err:
        load_experiment(path)
    msg = str(err.value)
    assert str(path) in msg and f"'{field}'" in msg
    assert f"Did you mean '{hint}'?" in msg


@pytest.mark.parametrize(
    ("changes", "field"),
    [({"training__epochs": 0}, "training.epochs"),
     ({"deploy__capacity_rounds": 0}, "deploy.capacity_rounds")],
)  # fmt: skip
def test_a_bad_value_names_the_field(tmp_path: Path, changes: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=rf"my-experiment\.yaml: field '{field}'"):
        load_experiment(_experiment(tmp_path, **changes))


def _config_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "configs"
    shutil.copytree(config_dir(), root)
    monkeypatch.setenv(CONFIG_DIR_ENV, str(root))
    return root


def test_a_typo_in_the_model_profiles_network_params(tmp_path, monkeypatch) -> None:
    root = _config_copy(tmp_path, monkeypatch)
    profile = root / "model_profiles" / "dynunet.yaml"
    profile.write_text(profile.read_text().replace("base_filters:", "base_filter:"))
    with pytest.raises(ConfigError) as err:
        load_experiment(_experiment(tmp_path))
    msg = str(err.value)
    assert str(profile) in msg and "base_filter" in msg
    assert "Did you mean 'base_filters'?" in msg


def test_a_typo_in_the_data_defaults_is_an_error_not_resampling_off(tmp_path, monkeypatch) -> None:
    root = _config_copy(tmp_path, monkeypatch)
    defaults = root / "data" / "defaults.yaml"
    for text, hint in (
        ("resampeling:\n  enabled: true\n  method: spacing\n", "resampling"),  # top level
        ("resampling:\n  enable: true\n", "enabled"),  # inside the block
    ):
        defaults.write_text(text)
        with pytest.raises(ConfigError) as err:
            load_experiment(_experiment(tmp_path))
        msg = str(err.value)
        assert str(defaults) in msg and f"Did you mean '{hint}'?" in msg


def test_the_cli_fails_before_prefect_starts_and_writes_nothing(tmp_path: Path) -> None:
    """`minivess experiment` with a typo: exit 2, one message naming the file, no workspace,
    no Prefect home (Prefect never started)."""
    path = _experiment(tmp_path, training__epoch=2)
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home")}
    ws = tmp_path / "ws"
    proc = subprocess.run(
        [sys.executable, "-m", "minivess", "experiment", "--config", str(path), "--workspace",
         str(ws)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert str(path) in proc.stderr.replace("\n", "") and "Did you mean 'epochs'?" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not ws.exists() and not (tmp_path / "prefect-home").exists()
    assert not (tmp_path / "workspace").exists()
