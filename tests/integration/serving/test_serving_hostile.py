"""Acceptance: every class of hostile or mistaken request against a real ``bentoml serve``.

Each request must get a 4xx with a JSON reason, fast, and the server must still answer a good
request after it (checked after every single one).
"""

from __future__ import annotations

import gzip
import io
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import nibabel as nib
import numpy as np
import pytest

from minivess.serving.guard import OTHER_ROUTE
from tests.integration.serving.conftest import SERVER_GROUP

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group(SERVER_GROUP)]


def _vox_offset_bomb() -> bytes:
    """16×16×8 uint8 whose header declares 4 GiB before the voxels, padded and gzipped."""
    hdr = nib.Nifti1Image(np.zeros((16, 16, 8), np.uint8), np.eye(4)).header.copy()
    hdr["vox_offset"] = 4 * 2**30
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=9) as gz:
        gz.write(hdr.binaryblock + b"\x00" * 4)
        for _ in range(32):  # 512 MiB of padding in ~0.5 MB
            gz.write(b"\x00" * 2**24)
    return buf.getvalue()


def _still_serving(server, auth, good: bytes) -> None:
    assert server.alive()
    assert httpx.get(f"{server.url}/readyz", timeout=10).status_code == 200
    resp = httpx.post(
        f"{server.url}/summary", files={"volume": ("ok.nii.gz", good)}, headers=auth, timeout=120
    )
    assert resp.status_code == 200, resp.text


def test_every_bad_request_class_is_a_4xx_and_the_server_keeps_serving(
    server, auth, volume_path: Path
) -> None:
    good = volume_path.read_bytes()
    url = f"{server.url}/summary"
    multipart = {"content-type": "multipart/form-data; boundary=xx", **auth}
    cases = {
        "vox_offset bomb": (
            dict(files={"volume": ("bomb.nii.gz", _vox_offset_bomb())}), 400, "bad_header"),
        "URL as a multipart string": (
            dict(files={"volume": (None, "http://example.com/scan.nii.gz")}), 400, "not_a_file"),
        "non-URL string": (dict(files={"volume": (None, "hello")}), 400, "not_a_file"),
        "URL as the raw body": (dict(content=b"http://example.com/a.nii.gz"), 415,
                                "not_multipart"),
        "JSON body": (dict(json={"volume": "http://example.com/a.nii.gz"}), 415,
                      "not_multipart"),
        "wrong field name": (dict(files={"image": ("v.nii.gz", good)}), 400, "unknown_field"),
        "two files": (dict(files=[("volume", ("a.nii.gz", good)), ("volume", ("b.nii.gz", good))]),
                      400, "too_many_files"),
        "malformed multipart": (
            dict(content=b"--xx\r\ngarbage", headers=multipart), 400, "malformed_multipart"),
        "truncated multipart": (
            dict(content=b'--xx\r\nContent-Disposition: form-data; name="volume"; '
                 b'filename="a.nii"\r\n\r\nabc', headers=multipart), 400, "malformed_multipart"),
        "307-character file name": (
            dict(files={"volume": ("a" * 300 + ".nii.gz", good)}), 400, "filename_too_long"),
        "empty body": (dict(), 415, "not_multipart"),
        "garbage file": (dict(files={"volume": ("x.nii.gz", b"\x89PNG" * 100)}), 415,
                         "not_nifti"),
    }  # fmt: skip
    for name, (kwargs, status, code) in cases.items():
        kwargs.setdefault("headers", auth)
        resp = httpx.post(url, timeout=60, **kwargs)
        assert resp.status_code == status, (name, resp.status_code, resp.text[:300])
        body = resp.json()
        assert body["error"] == code, (name, body)
        assert len(body["detail"]) > 20, name
        _still_serving(server, auth, good)
    get = httpx.get(url, headers=auth, timeout=10)
    assert (get.status_code, get.json()["error"]) == (405, "method_not_allowed")
    _still_serving(server, auth, good)


def test_metrics_labels_stay_bounded_under_random_paths(server, auth, volume_path) -> None:
    def label_sets() -> set[str]:
        text = httpx.get(f"{server.url}/metrics", timeout=10).text
        return {ln.rsplit(" ", 1)[0] for ln in text.splitlines() if ln and ln[0] != "#"}

    for i in range(30):
        httpx.get(f"{server.url}/probe-{i}", timeout=10)
    label_sets()  # /metrics counts itself once it has answered
    before = label_sets()
    for i in range(100):
        assert httpx.get(f"{server.url}/x{i}/{'y' * i}", timeout=10).status_code == 404
    after = label_sets()
    assert after == before
    assert f'route="{OTHER_ROUTE}"' in " ".join(after)
    assert not any(re.search(r'"/(x|probe-)\d', line) for line in after)


def test_overload_is_503_with_retry_after_and_the_server_recovers(
    server, auth, volume_path: Path
) -> None:
    """Hold ``max_concurrency`` (8) uploads in flight by streaming their bodies slowly; the next
    request gets a JSON 503 at once; after they finish, requests succeed again."""
    from minivess.serving.settings import ServeSettings

    limit = ServeSettings().max_concurrency
    good = volume_path.read_bytes()
    boundary = "slowbound"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="volume"; filename="v.nii.gz"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    release = threading.Event()
    started = threading.Semaphore(0)

    def slow_body():
        yield head
        started.release()
        release.wait(120)
        yield good + tail

    def slow_request(_: int) -> int:
        headers = {"content-type": f"multipart/form-data; boundary={boundary}", **auth}
        return httpx.post(f"{server.url}/summary", content=slow_body(), headers=headers,
                          timeout=180).status_code  # fmt: skip

    with ThreadPoolExecutor(max_workers=limit) as pool:
        futures = [pool.submit(slow_request, i) for i in range(limit)]
        for _ in range(limit):
            assert started.acquire(timeout=60)
        try:
            deadline = 0
            while True:  # the last body chunk may still be on its way into the guard
                resp = httpx.post(f"{server.url}/summary", files={"volume": ("v.nii.gz", good)},
                                  headers=auth, timeout=60)  # fmt: skip
                deadline += 1
                if resp.status_code == 503 or deadline > 20:
                    break
            assert resp.status_code == 503, resp.text
            assert resp.json()["error"] == "overloaded"
            assert int(resp.headers["retry-after"]) > 0
        finally:
            release.set()
        assert [f.result() for f in futures] == [200] * limit
    _still_serving(server, auth, good)
