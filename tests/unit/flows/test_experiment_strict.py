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
     ({"deploy__capacity_rounds": 0}, "deploy.capacity_rounds"),
     ({"training__seed": -1}, "training.seed"),  # numpy's k-fold split raised deep in the chain
     ({"data__seed": -1}, "data.seed"),
     ({"data__synth_volumes": 0}, "data.synth_volumes")],
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


#: Stands for the word under test in the experiment YAML (written unquoted by yaml.safe_dump).
WORD = "WORD_UNDER_TEST"


@pytest.mark.parametrize("word", ["yes", "true", "on", "no"])
@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"training__epochs": WORD}, "training.epochs"),
        ({"training__folds": [WORD]}, "training.folds': item 0"),
        ({"deploy__capacity_rounds": WORD}, "deploy.capacity_rounds"),
        ({"plan__cache_rate": WORD}, "plan.cache_rate"),
        ({"plan__sw_roi": [64, WORD, 8]}, "plan.sw_roi': item 1"),
    ],
)
def test_a_yes_or_no_where_a_number_goes_is_refused(
    tmp_path: Path, word: str, changes: dict, field: str
) -> None:
    """YAML reads yes/no/on/off/true/false as booleans, and pydantic's lax mode would take
    them as 1 and 0 (``epochs: yes`` trained one epoch): a number field refuses them."""
    path = _experiment(tmp_path, **changes)
    assert WORD in path.read_text()
    path.write_text(path.read_text().replace(WORD, word))
    with pytest.raises(ConfigError) as err:
        load_experiment(path)
    msg = str(err.value)
    assert f"my-experiment.yaml: field '{field}" in msg, msg
    assert "a yes/no value" in msg and "number" in msg, msg


@pytest.mark.parametrize(("word", "value"), [("yes", True), ("on", True), ("no", False)])
def test_a_yes_or_no_still_sets_a_yes_no_field(tmp_path: Path, word: str, value: bool) -> None:
    path = _experiment(tmp_path, deploy__force=WORD, plan__amp=WORD)
    path.write_text(path.read_text().replace(WORD, word))
    exp = load_experiment(path)
    assert exp.deploy.force is value and exp.plan.amp is value


@pytest.mark.parametrize("word", [".inf", ".nan", "-.inf"])
@pytest.mark.parametrize("field", ["lr", "weight_decay"])
def test_an_infinite_or_nan_number_is_refused(tmp_path: Path, word: str, field: str) -> None:
    """`lr: .inf` passed `gt=0` (inf > 0) and trained to NaN: no config number is inf or NaN."""
    path = _experiment(tmp_path, **{f"training__{field}": WORD})
    path.write_text(path.read_text().replace(WORD, word))
    with pytest.raises(ConfigError, match=rf"field 'training\.{field}': .*finite number"):
        load_experiment(path)


def test_a_data_dir_under_home_is_the_home_folder(tmp_path: Path) -> None:
    path = _experiment(tmp_path, data__dir="~/mvdata", data__test_dir="~/mvdata-test")
    exp = load_experiment(path)
    assert exp.data.dir == Path.home() / "mvdata"
    assert exp.data.test_dir == Path.home() / "mvdata-test"


def test_the_documented_experiment_file_loads(tmp_path: Path) -> None:
    """docs/flows.md's example experiment is a file `minivess experiment --config` accepts."""
    repo = Path(__file__).resolve().parents[3]
    text = (repo / "docs" / "flows.md").read_text()
    block = text.split("## An experiment file", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "loss-sweep.yaml"
    path.write_text(block)
    exp = load_experiment(path)
    assert exp.name == "loss-sweep" and exp.data.dir == Path.home() / "data" / "minivess"
