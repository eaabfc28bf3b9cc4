"""Acceptance: the real service over HTTP — masks, bad inputs, auth, metrics, bounded load."""

from __future__ import annotations

import gzip
import io
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import nibabel as nib
import numpy as np
import pytest
import serving_factories as factories  # registered by this folder's conftest

from tests.integration.serving.conftest import SERVER_GROUP

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group(SERVER_GROUP)]


@pytest.fixture
def post(server, auth):
    """``post(route, payload, name=..., headers=None)``: a multipart upload with the token."""

    def _post(route: str, payload: bytes, name: str = "volume.nii.gz", headers=None):
        return httpx.post(
            f"{server.url}{route}",
            files={"volume": (name, io.BytesIO(payload), "application/octet-stream")},
            headers=auth if headers is None else headers,
            timeout=120,
        )

    return _post


def test_segment_returns_a_mask_of_the_same_shape_and_affine(
    server, post, volume_path: Path
) -> None:
    resp = post("/segment", volume_path.read_bytes())
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "application/gzip"
    mask = nib.Nifti1Image.from_bytes(gzip.decompress(resp.content))
    ref = nib.load(volume_path)
    assert mask.shape == ref.shape
    np.testing.assert_allclose(mask.affine, ref.affine)
    values = set(np.unique(np.asarray(mask.dataobj)).tolist())
    assert values <= {0, 1}


def test_summary_counts_the_same_mask_in_um3(server, post, volume_path: Path) -> None:
    mask_resp = post("/segment", volume_path.read_bytes())
    mask = np.asarray(nib.Nifti1Image.from_bytes(gzip.decompress(mask_resp.content)).dataobj)
    summary = post("/summary", volume_path.read_bytes()).json()
    n = int((mask > 0).sum())
    assert summary["vessel_voxel_count"] == n
    assert summary["voxel_count"] == mask.size
    assert summary["spacing_um"] == [0.5, 0.5, 2.0]
    assert summary["vessel_volume_um3"] == pytest.approx(n * 0.5 * 0.5 * 2.0)


def _nifti_bytes(array: np.ndarray, gz: bool = True) -> bytes:
    raw = nib.Nifti1Image(array, np.eye(4)).to_bytes()
    return gzip.compress(raw) if gz else raw


def test_bad_inputs_get_a_4xx_with_a_reason_and_the_service_keeps_serving(
    server, post, auth, volume_path: Path, limits
) -> None:
    rng = np.random.default_rng(0)
    nan = np.ones((16, 16, 4), np.float32)
    nan[3, 3, 1] = np.nan
    cases = {
        "garbage": (b"\x89PNG not a volume" * 50, 415, "not_nifti"),
        "4d": (_nifti_bytes(np.zeros((16, 16, 4, 3), np.float32)), 422, "not_3d"),
        "oversized": (
            _nifti_bytes(rng.random((80, 80, 50), np.float32), gz=False),
            413,
            "too_large",
        ),
        "too_many_voxels": (
            _nifti_bytes(np.zeros((128, 128, 16), np.uint8)),
            413,
            "too_many_voxels",
        ),
        "nan": (_nifti_bytes(nan), 422, "not_finite"),
    }
    assert len(cases["oversized"][0]) > limits["max_upload_bytes"]
    for name, (payload, status, code) in cases.items():
        resp = post("/segment", payload)
        assert resp.status_code == status, (name, resp.text)
        body = resp.json()
        assert body["error"] == code, name
        assert len(body["detail"]) > 20, name  # a sentence saying what to send instead
    no_field = httpx.post(f"{server.url}/segment", files={"other": b"x"}, headers=auth, timeout=30)
    assert no_field.status_code == 400
    assert server.alive()
    assert post("/segment", volume_path.read_bytes()).status_code == 200


def test_bearer_token_is_required(server, post, volume_path: Path) -> None:
    assert post("/segment", volume_path.read_bytes(), headers={}).status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    resp = post("/summary", volume_path.read_bytes(), headers=wrong)
    assert (resp.status_code, resp.json()["error"]) == (401, "unauthorized")


def test_health_and_metrics(server, post, volume_path: Path) -> None:
    post("/summary", volume_path.read_bytes())
    post("/summary", b"junk" * 100)
    assert httpx.get(f"{server.url}/readyz").status_code == 200
    assert httpx.get(f"{server.url}/livez").status_code == 200
    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'minivess_inference_seconds_bucket{backend="onnx",endpoint="summary"' in metrics
    assert 'minivess_rejected_requests_total{endpoint="summary",reason="not_nifti"}' in metrics


def test_bounded_load_has_zero_errors(server, post, tmp_path: Path) -> None:
    """50 requests, 8 concurrent, small volumes, loopback only; reports p50/p95."""
    volumes = [
        factories.write_synthetic(tmp_path / f"v{i}", shape=(40, 40, 6), seed=10 + i).read_bytes()
        for i in range(4)
    ]

    def one(i: int) -> tuple[int, float]:
        t0 = time.perf_counter()
        resp = post("/segment", volumes[i % len(volumes)])
        return resp.status_code, time.perf_counter() - t0

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(one, range(50)))
    statuses = [s for s, _ in results]
    assert statuses.count(200) == 50, statuses
    latencies = np.array([t for _, t in results])
    report = {
        "requests": 50,
        "concurrency": 8,
        "errors": 50 - statuses.count(200),
        "p50_s": round(float(np.percentile(latencies, 50)), 4),
        "p95_s": round(float(np.percentile(latencies, 95)), 4),
    }
    print("serving load:", json.dumps(report))
    assert server.alive()


def test_nothing_is_written_outside_the_temp_dir(
    server, post, bundle_dir: Path, volume_path
) -> None:
    def snapshot(root: Path) -> set[str]:
        return {str(p.relative_to(root)) for p in root.rglob("*")}

    run_dir = server.log_path.parent
    before = snapshot(run_dir), snapshot(bundle_dir), snapshot(volume_path.parent.parent)
    for route in ("/segment", "/summary"):
        post(route, volume_path.read_bytes(), name="../../escape.nii.gz")
    post("/segment", b"junk", name="../../../etc/evil")
    after = snapshot(run_dir), snapshot(bundle_dir), snapshot(volume_path.parent.parent)
    assert after == before
