"""The last guard: no credential value from the environment reaches rendered text."""

from __future__ import annotations

import pytest

from minivess.errors import ConfigError
from minivess.launch.secrets import assert_clean

ENV = {
    "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG",
    "MY_API_TOKEN": "tok-998877",
    "LAB_VAR": "notsecret-but-declared",
    "SHORT_TOKEN": "1",
}


def test_clean_text_passes() -> None:
    assert_clean("secrets:\n  AWS_SECRET_ACCESS_KEY: null\n", ENV, ["LAB_VAR"], where="x")


@pytest.mark.parametrize("name", ["AWS_SECRET_ACCESS_KEY", "MY_API_TOKEN", "LAB_VAR"])
def test_leaked_value_names_the_variable_not_the_value(name: str) -> None:
    with pytest.raises(ConfigError) as err:
        assert_clean(f"envs:\n  X: {ENV[name]}\n", ENV, ["LAB_VAR"], where="rendered spot")
    assert name in str(err.value) and ENV[name] not in str(err.value)
    assert "rendered spot" in str(err.value)


def test_tiny_values_do_not_false_alarm() -> None:
    assert_clean("num_nodes: 1\n", ENV, [], where="x")
