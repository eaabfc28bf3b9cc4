"""The install extras match the personas: a serving host's imports are covered by ``[serve]``.

The serving code paths are imported in a fresh interpreter; every third-party module that ends up
in ``sys.modules`` is mapped to its distribution, and that distribution must be in the dependency
closure of minivess's core plus the ``[serve]`` extra (read from the installed metadata, i.e. from
pyproject.toml). SkyPilot, MLflow, Prefect and DVC must not be imported at all.
"""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import metadata

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

#: What a serving host runs: `minivess serve`, the BentoML service, export and the client.
SERVING_MODULES = [
    "minivess.cli",
    "minivess.cli.serving",
    "minivess.serving.local",
    "minivess.serving.service",
    "minivess.serving.inference",
    "minivess.serving.export",
    "minivess.serving.deploy",
    "minivess.serving.client",
    "minivess.serving.server",
]
FORBIDDEN_ON_SERVE = ("sky", "mlflow", "prefect", "dvc", "kubernetes")
#: Imported only when present (``try: import h2``) by httpcore / anyio: not requirements.
OPTIONAL_IMPORTS = {"h2", "hpack", "hyperframe", "sniffio"}

_PROBE = """
import importlib, json, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
print(json.dumps(sorted({n.split(".")[0] for n in sys.modules})))
"""


def _wanted(req: Requirement, extras: set[str]) -> bool:
    return req.marker is None or any(req.marker.evaluate({"extra": e}) for e in extras or {""})


def closure(dist: str, extras: set[str], seen: set[str] | None = None) -> set[str]:
    """Canonical names of ``dist`` and everything it requires with ``extras`` (installed)."""
    seen = set() if seen is None else seen
    key = canonicalize_name(dist)
    seen.add(key)
    reqs = [Requirement(line) for line in metadata.requires(dist) or []]
    extras = set(extras)
    while True:  # self-references such as minivess[all] -> minivess[train,serve,...]
        more = {
            e
            for r in reqs
            if canonicalize_name(r.name) == key and _wanted(r, extras)
            for e in r.extras
        }
        if more <= extras:
            break
        extras |= more
    for req in reqs:
        name = canonicalize_name(req.name)
        if name == key or name in seen or not _wanted(req, extras):
            continue
        try:
            closure(req.name, set(req.extras), seen)
        except metadata.PackageNotFoundError:
            seen.add(name)
    return seen


def imported_top_levels(modules: list[str]) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, *modules],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.fixture(scope="module")
def serve_imports() -> set[str]:
    return imported_top_levels(SERVING_MODULES)


def test_serving_code_imports_no_skypilot_mlflow_or_prefect(serve_imports: set[str]) -> None:
    leaked = sorted(set(FORBIDDEN_ON_SERVE) & serve_imports)
    assert not leaked, f"serving imports {leaked}; keep them behind their adapters"


def test_serve_extra_provides_every_serving_import(serve_imports: set[str]) -> None:
    allowed = closure("minivess", {"serve"})
    owners = metadata.packages_distributions()
    stdlib = set(sys.stdlib_module_names) | set(sys.builtin_module_names)
    missing = {}
    for top in serve_imports - stdlib - OPTIONAL_IMPORTS - {"minivess", "__main__"}:
        dists = {canonicalize_name(d) for d in owners.get(top, [])}
        if dists and not dists & allowed:
            missing[top] = sorted(dists)
    assert not missing, f"imported on a serving host but not in minivess[serve]: {missing}"


def test_launch_is_not_part_of_serve_but_is_part_of_all() -> None:
    serve = closure("minivess", {"serve"})
    assert "skypilot" not in serve
    assert "mlflow" not in serve
    every = closure("minivess", {"all"})
    assert {"skypilot", "mlflow", "prefect", "bentoml", "dvc", "torch"} <= every


def test_closure_reads_markers_of_the_requested_extra_only() -> None:
    core = closure("minivess", set())
    assert "pydantic" in core
    assert "bentoml" not in core and "skypilot" not in core and "torch" not in core
