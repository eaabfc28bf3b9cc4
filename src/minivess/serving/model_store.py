"""The exported model in BentoML's model store (``bentoml models list`` shows it).

A serving bundle's model files (plan, ONNX, TorchScript, state dict, spacing, export report) are
saved as the BentoML model ``minivess-segmenter:<content hash>``, with the MLflow provenance in
its labels (``mlflow_model``, ``mlflow_version``, ...) and the plan and parity figures in its
metadata. The version is a hash of the files that define the model (plan, spacing, state dict,
ONNX graph; the TorchScript archive is not byte-stable across exports of the same network), so
re-exporting an unchanged model finds the stored one instead of adding another.

The store is BentoML's: ``$BENTOML_HOME/models`` (default ``~/bentoml/models``). The bento
references the model by the alias :data:`MODEL_ALIAS` (bentofile ``models:``), and the service
asks ``bentoml.models.get(MODEL_ALIAS)`` for it, so ``bentoml serve <bento tag>`` needs no
environment variable.

Run in its own process (``python -m minivess.serving.model_store BUNDLE [--label k=v ...]``,
printing the tag) because BentoML reads ``BENTOML_HOME`` once per process.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

from minivess.errors import MinivessError
from minivess.serving.inference import (
    EXPORT_REPORT,
    ONNX_FILE,
    PLAN_FILE,
    SPACING_FILE,
    TORCHSCRIPT_FILE,
    WEIGHTS_FILE,
)
from minivess.tracking.contract import REGISTERED_MODEL

log = logging.getLogger(__name__)

#: Name of the model in BentoML's store: the MLflow registry's name for the same model.
STORE_MODEL = REGISTERED_MODEL
#: Alias under which a bento references its model (bentofile ``models:``; the service's lookup).
MODEL_ALIAS = "segmenter"
#: Bundle files copied into the stored model.
MODEL_FILES = (PLAN_FILE, SPACING_FILE, WEIGHTS_FILE, ONNX_FILE, TORCHSCRIPT_FILE, EXPORT_REPORT)
#: Files whose bytes define the model (its version); byte-stable across exports of one network.
KEY_FILES = (PLAN_FILE, SPACING_FILE, WEIGHTS_FILE, ONNX_FILE)
#: Printed before the tag on the subprocess's stdout.
TAG_PREFIX = "__model_tag__:"


class ModelStoreError(MinivessError):
    """Saving the bundle into BentoML's model store failed."""


def model_version(bundle: Path) -> str:
    """12 hex of a SHA-256 over the names and bytes of the bundle's :data:`KEY_FILES`."""
    digest = hashlib.sha256()
    for name in KEY_FILES:
        path = Path(bundle) / name
        if path.is_file():
            digest.update(name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def _metadata(bundle: Path) -> dict[str, object]:
    """Plan hash, model, window and parity figures of the bundle (JSON-safe)."""
    from minivess.planning.plan import TrainingPlan

    plan = TrainingPlan.load(bundle / PLAN_FILE)
    meta: dict[str, object] = {
        "plan_hash": plan.plan_hash,
        "network": plan.model,
        "sw_roi": list(plan.sw_roi),
    }
    report = bundle / EXPORT_REPORT
    if report.is_file():
        meta["export"] = _without_nulls(json.loads(report.read_text()))
    return meta


def _without_nulls(value: object) -> object:
    """JSON data without ``null`` entries (BentoML's metadata refuses ``None``)."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value if v is not None]
    return value


def save_bundle(bundle: Path, labels: dict[str, str] | None = None) -> str:
    """Save ``bundle`` as ``minivess-segmenter:<version>`` in this process's BentoML store.

    Returns the tag; a model already stored under that version is reused (nothing written).

    Raises:
        ModelStoreError: the bundle lacks its plan or ONNX model.
    """
    import bentoml
    from bentoml.exceptions import NotFound

    bundle = Path(bundle)
    missing = [n for n in (PLAN_FILE, ONNX_FILE) if not (bundle / n).is_file()]
    if missing:
        raise ModelStoreError(
            f"{bundle}: not a serving bundle (missing {', '.join(missing)}); export one with "
            "minivess.serving.export.export_bundle (minivess serve --model-uri does it)."
        )
    tag = f"{STORE_MODEL}:{model_version(bundle)}"
    try:
        stored = bentoml.models.get(tag)
    except NotFound:
        stored = None
    if stored is not None:
        log.info("model %s already in the BentoML store (%s); reusing it", tag, stored.path)
        return tag
    all_labels = {"project": "minivess", **(labels or {})}
    with bentoml.models.create(tag, labels=all_labels, metadata=_metadata(bundle)) as model:
        for name in MODEL_FILES:
            if (bundle / name).is_file():
                shutil.copy2(bundle / name, model.path_of(name))
    log.info("saved %s to the BentoML model store (labels %s)", tag, all_labels)
    return tag


def store_bundle(bundle: Path, env: dict[str, str], labels: dict[str, str] | None = None) -> str:
    """:func:`save_bundle` in a child process with ``env`` (its ``BENTOML_HOME``); the tag.

    Raises:
        ModelStoreError: the child failed (with its output's tail).
    """
    cmd = [sys.executable, "-m", "minivess.serving.model_store", str(bundle)]
    for key, value in (labels or {}).items():
        cmd += ["--label", f"{key}={value}"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    tag = next(
        (
            ln[len(TAG_PREFIX) :].strip()
            for ln in proc.stdout.splitlines()
            if ln.startswith(TAG_PREFIX)
        ),
        None,
    )
    if proc.returncode != 0 or tag is None:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-15:])
        raise ModelStoreError(f"saving {bundle} to the BentoML model store failed:\n{tail}")
    return tag


def main(argv: list[str] | None = None) -> int:
    """``python -m minivess.serving.model_store BUNDLE [--label key=value ...]``."""
    parser = argparse.ArgumentParser(prog="python -m minivess.serving.model_store")
    parser.add_argument("bundle", type=Path, help="serving bundle directory")
    parser.add_argument("--label", action="append", default=[], help="key=value label")
    args = parser.parse_args(argv)
    labels: dict[str, str] = {}
    for item in args.label:
        key, sep, value = item.partition("=")
        if not sep or not key:
            parser.error(f"--label {item!r}: expected key=value")
        labels[key] = value
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        tag = save_bundle(args.bundle, labels)
    except ModelStoreError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{TAG_PREFIX}{tag}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
