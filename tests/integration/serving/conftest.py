"""A real ``bentoml serve`` of a tiny exported model on a loopback port, shared by the module."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest


def _factories():
    """The unit tests' factories module (tiny plan/model, synthetic volumes)."""
    if "serving_factories" in sys.modules:
        return sys.modules["serving_factories"]
    path = Path(__file__).parents[2] / "unit" / "serving" / "serving_factories.py"
    spec = importlib.util.spec_from_file_location("serving_factories", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["serving_factories"] = module
    spec.loader.exec_module(module)
    return module


factories = _factories()

TOKEN_ENV = "MINIVESS_TEST_SERVE_TOKEN"
TOKEN = "integration-test-token"
#: Limits of the test server: the synthetic volumes fit, the crafted bad ones do not.
MAX_UPLOAD_BYTES = 1_000_000
MAX_VOXELS = 200_000
#: The xdist group of the tests that share :func:`server`: they run on one worker, in file
#: order, as in one process (split across workers, each half got its own server and the
#: metrics assertions of test_serving_http/test_serving_hostile failed).
SERVER_GROUP = "serving-server"


@pytest.fixture(scope="session")
def auth() -> dict[str, str]:
    """Headers that pass the test server's bearer-token check."""
    return {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="session")
def limits() -> dict[str, int]:
    return {"max_upload_bytes": MAX_UPLOAD_BYTES, "max_voxels": MAX_VOXELS}


@pytest.fixture(scope="session")
def serving_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("serving")


@pytest.fixture(scope="session")
def plan():
    return factories.make_plan()


@pytest.fixture(scope="session")
def model(plan):
    return factories.make_model(plan)


@pytest.fixture(scope="session")
def volume_path(serving_dir) -> Path:
    return factories.write_synthetic(serving_dir / "data")


@pytest.fixture(scope="session")
def bundle_dir(serving_dir, plan, model) -> Path:
    from minivess.serving.export import export_bundle

    return export_bundle(model, plan, serving_dir / "bundle").bundle


@pytest.fixture(scope="session")
def server(serving_dir, bundle_dir) -> Iterator:
    """The service as a subprocess (``bentoml serve``), with auth and small limits."""
    from minivess.serving.server import running_server
    from minivess.serving.settings import ServeSettings

    settings = ServeSettings(
        model_path=bundle_dir,
        max_upload_bytes=MAX_UPLOAD_BYTES,
        max_voxels=MAX_VOXELS,
        auth_token_env=TOKEN_ENV,
        num_threads=2,
    )
    with running_server(settings, serving_dir / "run", extra_env={TOKEN_ENV: TOKEN}) as srv:
        yield srv
