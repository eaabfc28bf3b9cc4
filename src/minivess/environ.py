"""The process environment: the one module of minivess that touches ``os.environ``.

The base layer of :mod:`minivess.settings` (which re-exports these), kept apart so that
:mod:`minivess.resources`, which ``settings`` imports through ``config``, reads the environment
through the same door without an import cycle. Everything else reads the environment through
``settings`` (``load_settings``, ``cache_root``, ``task_id``, ...) or takes an ``environ``
mapping; child processes get an explicit ``env=`` built from :func:`process_environ`. Nothing in
minivess writes the environment except :func:`scoped_environ`, which restores it exactly.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from unittest import mock


def process_environ() -> dict[str, str]:
    """A copy of this process's environment, for the settings readers and for child processes."""
    return dict(os.environ)


def environ_or(environ: Mapping[str, str] | None) -> Mapping[str, str]:
    """``environ`` when given (tests pass their own), else this process's environment (live)."""
    return os.environ if environ is None else environ


@contextlib.contextmanager
def scoped_environ(values: Mapping[str, str]) -> Iterator[None]:
    """Set ``values`` for the block only, then restore the whole environment exactly.

    For libraries that read their configuration from the environment and take no argument for
    it (MLflow's S3 artifact repository reads ``MLFLOW_S3_ENDPOINT_URL``; ``mlflow``'s global
    tracking URI exports ``MLFLOW_TRACKING_URI``). Whatever the library wrote is undone too.
    """
    with mock.patch.dict(os.environ, dict(values)):
        yield
