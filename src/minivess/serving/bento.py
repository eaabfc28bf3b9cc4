"""``bentoml build`` of the service, its model taken from BentoML's model store.

:func:`build_bento` saves the exported bundle in the model store (see
:mod:`minivess.serving.model_store`: ``minivess-segmenter:<content hash>``, MLflow provenance in
its labels), then builds a bento from a context (``ctx_dir``) that holds a copy of the
``minivess`` package, the deploy's ``capacity.json`` and a :file:`bentofile.yaml` (shipped next to
this module) pinning that model under the alias ``segmenter``. The bento references the model
(``bentoml list`` shows its size; ``bentoml containerize`` packs it), and ``bentoml serve <tag>``
needs nothing else. The stores are BentoML's (``$BENTOML_HOME``, default ``~/bentoml``).

The bento version is a hash of the context (code, bentofile with the pinned model, the capacity
pick), so rebuilding an unchanged model with unchanged code reuses the stored bento.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import minivess
from minivess.errors import MinivessError
from minivess.resources import bentofile
from minivess.serving.capacity import CAPACITY_FILE
from minivess.serving.model_store import MODEL_ALIAS, store_bundle
from minivess.settings import process_environ

log = logging.getLogger(__name__)

BENTOFILE = bentofile()
#: Marker file that says a folder is a build context we made (and may rewrite).
_MARKER = ".minivess-bento-ctx"


class BentoBuildError(MinivessError):
    """``bentoml build`` failed."""


@dataclass(frozen=True)
class Built:
    """A built (or reused) bento and the stored model it references."""

    tag: str
    model_tag: str
    reused: bool


def _capacity_pick(bundle: Path) -> dict[str, Any] | None:
    """The backend/device part of the bundle's capacity plan (what changes the served bento)."""
    path = Path(bundle) / CAPACITY_FILE
    if not path.is_file():
        return None
    cap = json.loads(path.read_text())
    return {"backend": cap["backend"], "device": cap["device"]}


def context_version(ctx: Path) -> str:
    """12 hex of a SHA-256 over the context's files (path and bytes), the marker excluded.

    ``capacity.json`` counts only by its pick (backend, device): its timings change per run.
    """
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(ctx).rglob("*") if p.is_file()):
        rel = path.relative_to(ctx).as_posix()
        if rel == _MARKER:
            continue
        data = path.read_bytes()
        if rel == CAPACITY_FILE:
            data = json.dumps(_capacity_pick(ctx), sort_keys=True).encode()
        digest.update(rel.encode() + b"\0" + data + b"\0")
    return digest.hexdigest()[:12]


def pinned_bentofile(model_tag: str) -> str:
    """The shipped bentofile with its ``models:`` entry pinned to ``model_tag``."""
    import yaml

    config = yaml.safe_load(BENTOFILE.read_text())
    config["models"] = [{"tag": model_tag, "alias": MODEL_ALIAS}]
    return yaml.safe_dump(config, sort_keys=False)


def prepare_build_context(bundle: Path, ctx_dir: Path, model_tag: str) -> Path:
    """Write the build context: package copy, ``capacity.json`` and a pinned ``bentofile.yaml``.

    Raises:
        BentoBuildError: ``ctx_dir`` exists, is not empty and is not a context we wrote.
    """
    ctx = Path(ctx_dir).absolute()  # `bentoml build` runs with the context as its cwd
    if ctx.exists() and any(ctx.iterdir()) and not (ctx / _MARKER).is_file():
        raise BentoBuildError(
            f"{ctx}: exists and is not a minivess bento build context; choose an empty folder."
        )
    if ctx.exists():
        shutil.rmtree(ctx)
    ctx.mkdir(parents=True)
    (ctx / _MARKER).write_text("written by minivess.serving.bento\n")
    package = Path(minivess.__file__).parent
    shutil.copytree(
        package, ctx / "minivess", ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "_data")
    )
    if (Path(bundle) / CAPACITY_FILE).is_file():
        shutil.copy2(Path(bundle) / CAPACITY_FILE, ctx / CAPACITY_FILE)
    (ctx / "bentofile.yaml").write_text(pinned_bentofile(model_tag))
    return ctx


def _existing_tag(version: str, env: dict[str, str]) -> str | None:
    """``name:version`` if the local bento store already holds that bento."""
    import yaml

    tag = f"{yaml.safe_load(BENTOFILE.read_text())['name']}:{version}"
    proc = subprocess.run(
        [sys.executable, "-m", "bentoml", "get", tag, "-o", "json"],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    return tag if proc.returncode == 0 else None


def build_bento(
    bundle: Path,
    ctx_dir: Path,
    env: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
) -> Built:
    """Store the model, then ``bentoml build`` a context pinning it (or reuse that bento).

    Args:
        bundle: the serving bundle (see :mod:`minivess.serving.export`), with the deploy's
            ``capacity.json`` when measured.
        ctx_dir: folder for the build context (rewritten).
        env: environment of the build (default ``os.environ``; e.g. set ``BENTOML_HOME``).
        labels: labels of the stored model (e.g. ``mlflow_model``, ``mlflow_version``).

    Raises:
        BentoBuildError: the build failed (with BentoML's output).
        ModelStoreError: saving the model failed.
    """
    run_env = process_environ() if env is None else dict(env)
    model_tag = store_bundle(bundle, run_env, labels)
    ctx = prepare_build_context(bundle, ctx_dir, model_tag)
    version = context_version(ctx)
    existing = _existing_tag(version, run_env)
    if existing:  # same model, code and pick: the build would be identical
        log.info("bento %s (model %s) already built; reusing it", existing, model_tag)
        return Built(existing, model_tag, reused=True)
    cmd = [
        sys.executable, "-m", "bentoml", "build", str(ctx),
        "-f", str(ctx / "bentofile.yaml"), "--version", version, "-o", "tag",
    ]  # fmt: skip
    log.info("bentoml build %s (model %s, version %s = context hash)", ctx, model_tag, version)
    proc = subprocess.run(cmd, cwd=ctx, env=run_env, capture_output=True, text=True)
    tag = next(
        (ln.split("__tag__:", 1)[1].strip() for ln in proc.stdout.splitlines() if "__tag__:" in ln),
        None,
    )
    if proc.returncode != 0 or tag is None:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-20:])
        raise BentoBuildError(f"bentoml build {ctx} failed (exit {proc.returncode}):\n{tail}")
    log.info("built bento %s with model %s", tag, model_tag)
    return Built(tag, model_tag, reused=False)
