"""``bentoml build`` of the service with an exported model bundle.

The build context (``ctx_dir``) holds a copy of the ``minivess`` package, the bundle under
``bundle/`` and :file:`bentofile.yaml` (shipped next to this module), so the bento is
self-contained: ``bentoml serve <tag>`` and ``bentoml containerize <tag>`` need nothing else.
The bento store is BentoML's (``$BENTOML_HOME``, default ``~/bentoml``).
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import minivess
from minivess.errors import MinivessError
from minivess.resources import bentofile
from minivess.serving.inference import ONNX_FILE, PLAN_FILE
from minivess.settings import process_environ

log = logging.getLogger(__name__)

BENTOFILE = bentofile()
#: Name of the bundle folder inside the build context (matches bentofile.yaml).
BUNDLE_DIR = "bundle"
#: Marker file that says a folder is a build context we made (and may rewrite).
_MARKER = ".minivess-bento-ctx"


class BentoBuildError(MinivessError):
    """``bentoml build`` failed."""


def bundle_version(bundle: Path) -> str:
    """A content hash (12 hex) of the bundle's plan and ONNX model: the bento version."""
    digest = hashlib.sha256()
    for name in (PLAN_FILE, ONNX_FILE):
        digest.update((Path(bundle) / name).read_bytes())
    return digest.hexdigest()[:12]


def prepare_build_context(bundle: Path, ctx_dir: Path) -> Path:
    """Write the build context: package copy, ``bundle/`` and ``bentofile.yaml``.

    Raises:
        BentoBuildError: ``ctx_dir`` exists, is not empty and is not a context we wrote.
    """
    ctx = Path(ctx_dir)
    if ctx.exists() and any(ctx.iterdir()) and not (ctx / _MARKER).is_file():
        raise BentoBuildError(
            f"{ctx}: exists and is not a minivess bento build context; choose an empty folder."
        )
    if ctx.exists():
        shutil.rmtree(ctx)
    ctx.mkdir(parents=True)
    (ctx / _MARKER).write_text("written by minivess.serving.bento\n")
    package = Path(minivess.__file__).parent
    shutil.copytree(package, ctx / "minivess", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(bundle, ctx / BUNDLE_DIR)
    shutil.copy2(BENTOFILE, ctx / "bentofile.yaml")
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


def build_bento(bundle: Path, ctx_dir: Path, env: dict[str, str] | None = None) -> str:
    """Run ``bentoml build`` on a fresh build context; returns the bento tag ``name:version``.

    Args:
        bundle: the serving bundle (see :mod:`minivess.serving.export`).
        ctx_dir: folder for the build context (rewritten).
        env: environment of the build (default ``os.environ``; e.g. set ``BENTOML_HOME``).

    Raises:
        BentoBuildError: the build failed (with BentoML's output).
    """
    version = bundle_version(bundle)
    run_env = process_environ() if env is None else dict(env)
    existing = _existing_tag(version, run_env)
    if existing:  # same bundle content, same version: the build would be identical
        log.info("bento %s already built; reusing it", existing)
        return existing
    ctx = prepare_build_context(bundle, ctx_dir)
    cmd = [
        sys.executable, "-m", "bentoml", "build", str(ctx),
        "-f", str(ctx / "bentofile.yaml"), "--version", version, "-o", "tag",
    ]  # fmt: skip
    log.info("bentoml build %s (version %s = bundle content hash)", ctx, version)
    proc = subprocess.run(cmd, cwd=ctx, env=run_env, capture_output=True, text=True)
    tag = next(
        (ln.split("__tag__:", 1)[1].strip() for ln in proc.stdout.splitlines() if "__tag__:" in ln),
        None,
    )
    if proc.returncode != 0 or tag is None:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-20:])
        raise BentoBuildError(f"bentoml build {ctx} failed (exit {proc.returncode}):\n{tail}")
    log.info("built bento %s", tag)
    return tag
