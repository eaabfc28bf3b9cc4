"""Versions of the stored model and of the bento: content hashes that ignore per-run noise.

The real model store and ``bentoml build``/``serve`` run in
``tests/integration/serving/test_serving_deploy.py``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml

from minivess.serving.bento import context_version, pinned_bentofile, prepare_build_context
from minivess.serving.capacity import CAPACITY_FILE
from minivess.serving.inference import EXPORT_REPORT, TORCHSCRIPT_FILE, WEIGHTS_FILE
from minivess.serving.model_store import MODEL_ALIAS, STORE_MODEL, model_version


def _copy(bundle, tmp_path: Path, name: str) -> Path:
    out = tmp_path / name
    shutil.copytree(bundle.bundle, out)
    return out


def test_model_version_is_the_weights_not_the_run_noise(bundle, tmp_path: Path) -> None:
    a = _copy(bundle, tmp_path, "a")
    b = _copy(bundle, tmp_path, "b")
    # What differs between two exports of one network: TorchScript archive, timings, capacity.
    (b / TORCHSCRIPT_FILE).write_bytes((b / TORCHSCRIPT_FILE).read_bytes() + b"\0")
    (b / EXPORT_REPORT).write_text(json.dumps({"torch_seconds": 9.9}))
    (b / CAPACITY_FILE).write_text("{}")
    assert model_version(a) == model_version(b)
    weights = bytearray((b / WEIGHTS_FILE).read_bytes())
    weights[-1] ^= 1
    (b / WEIGHTS_FILE).write_bytes(bytes(weights))
    assert model_version(a) != model_version(b)


def _capacity(backend: str, best_s: float) -> str:
    return json.dumps({"backend": backend, "device": "cpu", "figures": [{"best_s": best_s}]})


def test_bento_version_follows_model_code_and_pick_not_timings(bundle, tmp_path: Path) -> None:
    src = _copy(bundle, tmp_path, "bundle")
    (src / CAPACITY_FILE).write_text(_capacity("torch", 1.0))
    base = context_version(prepare_build_context(src, tmp_path / "c1", f"{STORE_MODEL}:aaa"))
    (src / CAPACITY_FILE).write_text(_capacity("torch", 2.5))  # a re-measure, same pick
    assert (
        context_version(prepare_build_context(src, tmp_path / "c2", f"{STORE_MODEL}:aaa")) == base
    )
    (src / CAPACITY_FILE).write_text(_capacity("onnx", 0.5))  # another pick
    assert (
        context_version(prepare_build_context(src, tmp_path / "c3", f"{STORE_MODEL}:aaa")) != base
    )
    (src / CAPACITY_FILE).write_text(_capacity("torch", 1.0))
    other_model = prepare_build_context(src, tmp_path / "c4", f"{STORE_MODEL}:bbb")
    assert context_version(other_model) != base
    code = prepare_build_context(src, tmp_path / "c5", f"{STORE_MODEL}:aaa")
    (code / "minivess" / "serving" / "service.py").write_text("# edited\n", encoding="utf-8")
    assert context_version(code) != base


def test_the_build_context_pins_the_stored_model_by_alias(bundle, tmp_path: Path) -> None:
    ctx = prepare_build_context(bundle.bundle, tmp_path / "ctx", f"{STORE_MODEL}:abc123")
    config = yaml.safe_load((ctx / "bentofile.yaml").read_text())
    assert config["models"] == [{"tag": f"{STORE_MODEL}:abc123", "alias": MODEL_ALIAS}]
    assert not any(ctx.rglob("*.onnx"))  # the model lives in the store, not in the bento's code
    shipped = yaml.safe_load(pinned_bentofile(f"{STORE_MODEL}:latest"))
    assert shipped["service"] == "minivess.serving.service:MinivessSegmenter"
