"""Secrets travel by name only: a last guard before anything is written or printed.

:func:`assert_clean` refuses text (a rendered YAML, a printed command) that contains the
*value* of any credential in the environment: the target's declared secret names, the
well-known cloud/MLflow/Hugging Face variables, and any variable whose name looks like a
credential. The error names the variable, never the value.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from minivess.errors import ConfigError
from minivess.launch.targets import SECRET_NAME_PATTERN

#: Credentials minivess users commonly have in their shell.
WELL_KNOWN = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
)
#: Shorter values are too likely to match by chance ("1", "true").
MIN_SECRET_LEN = 6


def secret_names(environ: Mapping[str, str], declared: Iterable[str]) -> list[str]:
    """Names whose values must never appear in rendered output."""
    names = set(declared) | set(WELL_KNOWN)
    names |= {k for k in environ if SECRET_NAME_PATTERN.search(k)}
    return sorted(n for n in names if len(environ.get(n, "")) >= MIN_SECRET_LEN)


def assert_clean(
    text: str, environ: Mapping[str, str], declared: Iterable[str], where: str
) -> None:
    """Raise if ``text`` contains the value of a credential from ``environ``.

    Raises:
        ConfigError: names the leaking variable(s) and the fix, never the value.
    """
    leaked = [n for n in secret_names(environ, declared) if environ[n] in text]
    if leaked:
        raise ConfigError(
            f"{where}: would contain the value of {', '.join(leaked)}. Secrets travel by name "
            "only: remove the value from the target's envs/template and list the name under "
            "secrets:."
        )
