"""Acceptance: the deploy flow's body on a real checkpoint, and ``minivess serve``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import serving_factories as factories  # registered by this folder's conftest

pytestmark = pytest.mark.slow


def _save_checkpoint(model, plan, path: Path) -> Path:
    """A checkpoint in training's format (``minivess.training.checkpoint``)."""
    from minivess.training.checkpoint import save_state

    state = {"plan": plan.model_dump_json(), "model": model.state_dict(), "out_channels": 2}
    save_state(state, path)
    return path


def _bentoml_json(*args: str) -> object:
    """``bentoml <args> -o json`` in this process's environment (its BENTOML_HOME)."""
    import json

    proc = subprocess.run([sys.executable, "-m", "bentoml", *args, "-o", "json"],
                          capture_output=True, text=True, timeout=120, check=True)  # fmt: skip
    return json.loads(proc.stdout)


def test_deploy_model_exports_builds_and_smoke_tests(
    tmp_path: Path, monkeypatch, plan, model, volume_path
) -> None:
    from minivess.serving.deploy import DEPLOY_REPORT, deploy_model
    from minivess.serving.settings import ServeSettings

    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "bentoml"))  # private bento/model stores
    checkpoint = _save_checkpoint(model, plan, tmp_path / "ckpt" / "best.pt")
    dataset_files = sorted(volume_path.parent.iterdir())
    labels = {"mlflow_model": "minivess-segmenter", "mlflow_version": "7"}
    result = deploy_model(
        str(checkpoint), tmp_path / "deploy", settings=ServeSettings(), smoke_volume=volume_path,
        labels=labels, capacity_rounds=1,  # every backend still timed, interleaved
    )  # fmt: skip
    assert result.parity.dice >= 0.99
    assert result.parity.shape == (64, 48, 10)
    assert result.bento_tag.startswith("minivess_segmenter:")
    assert (tmp_path / "bentoml" / "bentos" / "minivess_segmenter").is_dir()
    assert result.smoke.mask_shape == (64, 48, 10)
    assert result.smoke.affine_preserved
    assert result.smoke.bad_input_status == 415
    assert result.onnx_path.is_file() and result.torchscript_path.is_file()
    assert (tmp_path / "deploy" / DEPLOY_REPORT).is_file()
    assert sorted(volume_path.parent.iterdir()) == dataset_files  # nothing written into the data
    assert result.endpoint.startswith("http://127.0.0.1:")
    with pytest.raises(httpx.HTTPError):  # stopped after the smoke test (keep_running=False)
        httpx.get(f"{result.endpoint}/readyz", timeout=2)

    # The model is in BentoML's model store, with its MLflow provenance; the bento references it.
    models = _bentoml_json("models", "list")
    assert [m["tag"] for m in models] == [result.model_tag]  # type: ignore[index]
    stored = _bentoml_json("models", "get", result.model_tag)
    assert {k: stored["labels"][k] for k in labels} == labels  # type: ignore[index]
    bento = _bentoml_json("get", result.bento_tag)
    assert [m["tag"] for m in bento["models"]] == [result.model_tag]  # type: ignore[index]
    bentos = _bentoml_json("list")
    assert bentos[0]["model_size"] not in ("0 B", "0.00 B")  # type: ignore[index]

    # Re-exporting the same model (a re-run of the deploy flow) reuses model and bento.
    from minivess.serving.bento import build_bento
    from minivess.serving.export import export_bundle

    again = export_bundle(model, plan, tmp_path / "bundle-again").bundle
    (again / "capacity.json").write_bytes((result.bundle / "capacity.json").read_bytes())
    rebuilt = build_bento(again, tmp_path / "ctx2")
    assert (rebuilt.tag, rebuilt.model_tag, rebuilt.reused) == (
        result.bento_tag,
        result.model_tag,
        True,
    )
    assert len(_bentoml_json("list")) == 1  # type: ignore[arg-type]

    # The capacity plan: every CPU backend measured (interleaved), the fastest picked.
    cap = result.capacity
    assert cap is not None
    assert {f.name for f in cap.figures} >= {"eager-cpu", "torch-cpu", "onnx-cpu"}
    assert {f.runs for f in cap.figures} == {1}
    assert cap.figure(cap.picked).best_s == min(f.best_s for f in cap.figures)
    assert cap.resources["cpus"].endswith("+") and "accelerators" not in cap.resources
    assert cap.target_qps_per_replica > 0

    # Another model stored later becomes the store's latest; the bento keeps serving its own.
    from minivess.serving.inference import load_segmenter
    from minivess.serving.model_store import store_bundle
    from minivess.serving.nifti import load_volume

    other = export_bundle(factories.make_model(plan, seed=1), plan, tmp_path / "other").bundle
    other_tag = store_bundle(other, dict(os.environ))
    assert other_tag != result.model_tag
    vol = load_volume(volume_path, max_voxels=10**6)
    other_mask = load_segmenter(ServeSettings(model_path=other, backend=cap.backend)).segment(
        vol.array, spacing=vol.info.spacing
    )
    other_fraction = float((other_mask > 0).mean())
    assert other_fraction != pytest.approx(result.smoke.vessel_fraction)

    # A plain `bentoml serve <tag>`, as a BentoML user runs it: no MINIVESS_* variable at all.
    from minivess.serving.server import free_port

    env = {k: v for k, v in os.environ.items() if not k.startswith("MINIVESS_")}
    port = free_port()
    cmd = [sys.executable, "-m", "bentoml", "serve", result.bento_tag, "--port", str(port)]
    cmd += ["--host", "127.0.0.1"]
    log_path = tmp_path / "plain.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
    try:
        _wait_ready(f"http://127.0.0.1:{port}", proc, log_path)
        from minivess.serving.client import summarize_file

        summary = summarize_file(f"http://127.0.0.1:{port}", volume_path)
        assert summary["backend"] == cap.backend  # the measured pick, carried by the bento
        assert summary["vessel_fraction"] == pytest.approx(result.smoke.vessel_fraction)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)

    # A plain `bentoml build` of the shipped bentofile takes the store's latest model.
    import minivess
    from minivess.resources import bentofile

    src = Path(minivess.__file__).parents[1]
    proc2 = subprocess.run(
        [sys.executable, "-m", "bentoml", "build", "-f", str(bentofile()), str(src), "-o", "tag"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc2.returncode == 0, proc2.stdout[-2000:] + proc2.stderr[-2000:]
    plain_tag = proc2.stdout.split("__tag__:", 1)[1].split()[0]
    assert [m["tag"] for m in _bentoml_json("get", plain_tag)["models"]] == [other_tag]  # type: ignore[index]


def test_minivess_serve_serves_a_checkpoint_and_stops_on_sigterm(
    tmp_path: Path, plan, model, volume_path
) -> None:
    """A checkpoint directory served as is, then ``kill <pid>`` (systemd, docker stop): circusd
    and its workers end too and the port is free. (SIGINT: the test below.)"""
    from minivess.serving.client import summarize_file
    from minivess.serving.server import free_port

    checkpoint = _save_checkpoint(model, plan, tmp_path / "run" / "best.pt")
    port = free_port()
    cmd = [sys.executable, "-m", "minivess", "serve", "--model-uri", str(checkpoint.parent)]
    cmd += ["--port", str(port), "--workdir", str(tmp_path / "work")]
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, proc, log_path)
        summary = summarize_file(url, volume_path)
        assert summary["shape"] == [64, 48, 10]
        assert summary["backend"] == "onnx"
        _assert_stops(proc, port, signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_minivess_serve_bad_model_uri_is_a_one_line_error(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "minivess", "serve", "--model-uri", str(tmp_path / "nope")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "nope: no such file or directory" in proc.stderr


def test_minivess_serve_resolves_the_registry_champion(
    tmp_path: Path, monkeypatch, plan, model, mlflow_db
) -> None:
    """models:/<name>/latest: the real producer (register_model) and consumer (bundle_for)."""
    import mlflow

    from minivess.serving.local import bundle_for, is_bundle
    from minivess.settings import load_settings
    from minivess.tracking import mlflow_adapter as mfa
    from minivess.tracking.contract import REGISTERED_MODEL, Flow

    for var in ("MLFLOW_TRACKING_URI", "MINIVESS_S3_BUCKET", "MINIVESS_S3_ENDPOINT_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MINIVESS_WORKSPACE", str(tmp_path / "ws"))  # SQLite + file artifacts
    settings = load_settings()
    mlflow_db(settings)
    client = mfa.connect(settings)
    checkpoint = _save_checkpoint(model, plan, tmp_path / "ckpt" / "best.pt")
    with mfa.flow_run(client, settings, Flow.ANALYSIS, run_name="champion") as run:
        mlflow.log_artifact(str(checkpoint), "model")
    version = mfa.register_model(
        client, f"runs:/{run.info.run_id}/model", run_id=run.info.run_id, expected_files=["best.pt"]
    )

    bundle = bundle_for(f"models:/{REGISTERED_MODEL}/latest", tmp_path / "work")
    assert is_bundle(bundle)
    assert (tmp_path / "work" / "registry" / f"{REGISTERED_MODEL}-{version.version}").is_dir()
    # --workspace from another directory; a version that does not exist is one line naming
    # the versions that do.
    cmd = [sys.executable, "-m", "minivess", "serve", "--workspace", str(tmp_path / "ws")]
    cmd += ["--model-uri", f"models:/{REGISTERED_MODEL}/99", "--workdir", str(tmp_path / "w2")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path / "ckpt")
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert f"no version 99 of '{REGISTERED_MODEL}'" in lines[0]
    assert f"registered versions: {version.version}" in lines[0]
    # No --model-uri and no MINIVESS_SERVE_MODEL_PATH: the registry's @champion is asked for
    # (this registry has none yet: one line with the fix).
    bare = [sys.executable, "-m", "minivess", "serve", "--workspace", str(tmp_path / "ws")]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINIVESS_SERVE_")}
    proc = subprocess.run(bare, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 2, proc.stderr
    assert f"'{REGISTERED_MODEL}' has no alias @champion" in proc.stderr, proc.stderr


def _wait_ready(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-2000:]
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"not ready: {log.read_text()[-2000:]}")


def _assert_stops(proc: subprocess.Popen, port: int, sig: int) -> None:
    """``sig`` to the one pid, as ``kill`` sends it: it exits 128+sig, its circusd and workers
    end, and ``port`` is free again."""
    import psutil

    family = psutil.Process(proc.pid).children(recursive=True)
    assert any("circus" in " ".join(p.cmdline()) for p in family), [p.cmdline() for p in family]
    os.kill(proc.pid, sig)
    assert proc.wait(60) == 128 + sig
    psutil.wait_procs(family, timeout=30)
    alive = [p.pid for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert alive == []
    with socket_bound(port):
        pass  # the port is free again


def test_minivess_serve_stops_on_sigint_and_leaves_no_process(tmp_path: Path, bundle_dir):
    """Ctrl-C of ``minivess serve`` (a bundle directory) ends circusd and its workers too and
    frees the port. (SIGTERM: the checkpoint test above.)"""
    from minivess.serving.server import free_port

    port = free_port()
    cmd = [sys.executable, "-m", "minivess", "serve", "--model-uri", str(bundle_dir)]
    cmd += ["--port", str(port), "--workdir", str(tmp_path / "work")]
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_ready(f"http://127.0.0.1:{port}", proc, log_path)
        _assert_stops(proc, port, signal.SIGINT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def socket_bound(port: int):
    import socket

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", port))
    return sock
