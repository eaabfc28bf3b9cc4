"""A small Python client of the segmentation service (what docs/serving.md shows).

Example:
    >>> from minivess.serving.client import segment_file, summarize_file
    >>> url = "http://127.0.0.1:3000"
    >>> segment_file(url, "mv01.nii.gz", "mv01_mask.nii.gz")  # doctest: +SKIP
    >>> summarize_file(url, "mv01.nii.gz")["vessel_volume_um3"]  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from minivess.errors import MinivessError

#: Seconds a request may take (sliding-window inference of a large volume on CPU is slow).
DEFAULT_TIMEOUT = 600.0


class ServiceError(MinivessError):
    """The service answered with an error; ``status`` and ``body`` hold its reply."""

    def __init__(self, status: int, body: Any) -> None:
        detail = body.get("detail") if isinstance(body, dict) else body
        super().__init__(f"service returned HTTP {status}: {detail}")
        self.status = status
        self.body = body


def _post(url: str, route: str, volume: Path, token: str | None, timeout: float):
    import httpx

    volume = Path(volume)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with volume.open("rb") as fh:
        resp = httpx.post(
            f"{url.rstrip('/')}{route}",
            files={"volume": (volume.name, fh, "application/octet-stream")},
            headers=headers,
            timeout=timeout,
        )
    if resp.status_code >= 400:
        try:
            body: Any = resp.json()
        except ValueError:
            body = resp.text
        raise ServiceError(resp.status_code, body)
    return resp


def segment_file(
    url: str,
    volume: Path | str,
    out_path: Path | str,
    token: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> Path:
    """POST ``volume`` to ``url/segment`` and write the returned mask (.nii.gz) to ``out_path``.

    Raises:
        ServiceError: a 4xx/5xx reply, with the service's JSON error.
    """
    resp = _post(url, "/segment", Path(volume), token, timeout)
    out = Path(out_path)
    out.write_bytes(resp.content)
    return out


def summarize_file(
    url: str, volume: Path | str, token: str | None = None, timeout: float = DEFAULT_TIMEOUT
) -> dict[str, Any]:
    """POST ``volume`` to ``url/summary``; returns the JSON summary (µm, µm³)."""
    return _post(url, "/summary", Path(volume), token, timeout).json()
