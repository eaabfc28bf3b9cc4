"""The BentoML segmentation service (new-style ``bentoml.service``).

Start it with ``bentoml serve <bento tag>``, ``bentoml serve
minivess.serving.service:MinivessSegmenter --port P`` or ``minivess serve``; it reads
:class:`~minivess.serving.settings.ServeSettings` from its environment, and without a
``model_path`` serves its model from BentoML's model store (:func:`stored_model_path`). Routes:

* ``POST /segment``: multipart field ``volume`` (.nii/.nii.gz) -> the mask as .nii.gz, uint8,
  same shape and affine;
* ``POST /summary``: same input -> JSON with the vessel voxel count and volume in µm³;
* ``/readyz``, ``/livez``, ``/metrics`` (BentoML built-ins; ``minivess_inference_seconds`` is
  the inference-latency histogram).

Bad input gets a 4xx JSON body ``{"error": code, "detail": message, "status": N}``. Uploads live
only in BentoML's per-request temp dir; the mask is built in memory, nothing else is written.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import bentoml
import numpy as np
from pydantic import BaseModel

from minivess.resources import package_parent
from minivess.serving.guard import PROTECTED_ROUTES, RequestGuard
from minivess.serving.inference import load_segmenter
from minivess.serving.nifti import InputRejected, Volume, load_volume, mask_nifti_gz
from minivess.serving.settings import Backend, Device, ServeSettings, load_serve_settings

log = logging.getLogger(__name__)

#: Media type of the /segment response.
NIFTI_GZ = "application/gzip"
#: Buckets (s) of the latency histogram: small volumes take ~0.1 s, 512×512×110 tens of s.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 60, 120, 300)

_METRICS: dict[str, Any] = {}


def _metrics() -> dict[str, Any]:
    """Prometheus collectors, created once per process after BentoML set up multiprocess mode."""
    if not _METRICS:
        import prometheus_client as prom

        _METRICS["latency"] = prom.Histogram(
            "minivess_inference_seconds",
            "Sliding-window inference time per request (s)",
            ["endpoint", "backend"],
            buckets=LATENCY_BUCKETS,
        )
        _METRICS["rejected"] = prom.Counter(
            "minivess_rejected_requests",
            "Requests refused because of their input, by reason",
            ["endpoint", "reason"],
        )
    return _METRICS


class VolumeSummary(BaseModel):
    """The /summary response. Spacing (x, y, z) in µm, volumes in µm³."""

    shape: tuple[int, int, int]
    spacing_um: tuple[float, float, float]
    spacing_unit_assumed: bool
    voxel_count: int
    vessel_voxel_count: int
    vessel_fraction: float
    vessel_volume_um3: float
    backend: str
    inference_seconds: float


def stored_model_path() -> Path:
    """The directory of the model this service serves, from BentoML's model store.

    In a bento (or a build context) the bentofile's ``models:`` entry names it by the alias
    ``segmenter``; elsewhere (``bentoml serve minivess.serving.service:MinivessSegmenter`` with
    no model configured) it is the latest stored ``minivess-segmenter``.

    Raises:
        ConfigError: the store holds no such model (with the two ways to provide one).
    """
    from bentoml.exceptions import NotFound

    from minivess.errors import ConfigError
    from minivess.serving.model_store import MODEL_ALIAS, STORE_MODEL
    from minivess.serving.settings import ENV_PREFIX

    for ref in (MODEL_ALIAS, f"{STORE_MODEL}:latest"):
        try:
            model = bentoml.models.get(ref)
        except NotFound:
            continue
        log.info("model %s from the BentoML model store (%s)", model.tag, ref)
        return Path(model.path)
    raise ConfigError(
        f"no model to serve: BentoML's model store has no {STORE_MODEL} and "
        f"{ENV_PREFIX}MODEL_PATH is not set; deploy one (python -m minivess.serving.model_store "
        f"BUNDLE, or the deploy flow) or set {ENV_PREFIX}MODEL_PATH to a bundle directory."
    )


def resolve_bundle_path(settings: ServeSettings) -> ServeSettings:
    """Resolve the bundle and, unless set, the backend, so ``bentoml serve <tag>`` needs no env.

    No ``model_path`` means the stored model (:func:`stored_model_path`); a relative one resolves
    against the working directory, else against the source root this module was loaded from. A
    backend not set by config or env comes from the capacity plan: the bundle's own
    ``capacity.json``, else the one a bento carries next to its ``minivess`` package (the
    deploy's measured pick).
    """
    import json

    from minivess.serving.capacity import CAPACITY_FILE

    src_root = package_parent()
    if settings.model_path is None:
        settings = settings.model_copy(update={"model_path": stored_model_path()})
    path = settings.require_model_path()
    if not (path.is_absolute() or path.exists()) and (src_root / path).exists():
        settings = settings.model_copy(update={"model_path": src_root / path})
    plans = (settings.require_model_path() / CAPACITY_FILE, src_root / CAPACITY_FILE)
    plan_file = next((p for p in plans if p.is_file()), None)
    if "backend" not in settings.model_fields_set and plan_file is not None:
        cap = json.loads(plan_file.read_text())
        backend, device = Backend(cap["backend"]), Device(cap["device"])
        log.info("backend %s on %s from the capacity plan %s", backend, device, plan_file)
        settings = settings.model_copy(update={"backend": backend, "device": device})
    return settings


def _error_response(err: InputRejected) -> Any:
    from starlette.responses import JSONResponse

    return JSONResponse(err.as_json(), status_code=err.status)


@bentoml.service(
    name="minivess_segmenter",
    workers=1,
    traffic={"timeout": 600},  # concurrency is bounded by the guard (JSON 503 + Retry-After)
    metrics={"enabled": False},  # the guard serves /metrics with bounded route labels
)
class MinivessSegmenter:
    """Vessel segmentation of 3D NIfTI volumes with the exported champion model."""

    def __init__(self) -> None:
        self.settings = resolve_bundle_path(load_serve_settings())
        self.segmenter = load_segmenter(self.settings)
        self.backend = self.settings.backend.value
        # One window of zeros before /readyz turns green: the first call builds kernels/arenas,
        # so the first user request does not pay seconds of warm-up.
        self.segmenter.segment(np.zeros(self.segmenter.plan.sw_roi, dtype=np.float32))

    def _infer(self, volume: Path, endpoint: str) -> tuple[Volume, Any, float]:
        metrics = _metrics()
        try:
            vol = load_volume(volume, self.settings.max_voxels)
        except InputRejected as err:
            metrics["rejected"].labels(endpoint, err.code).inc()
            log.info("rejected %s: %s (%s)", endpoint, err.code, err.message)
            raise
        t0 = time.perf_counter()
        mask = self.segmenter.segment(vol.array, spacing=vol.info.spacing)
        seconds = time.perf_counter() - t0
        metrics["latency"].labels(endpoint, self.backend).observe(seconds)
        return vol, mask, seconds

    @bentoml.api(route="/segment")
    def segment(self, volume: Path) -> Path:
        """Segment the uploaded NIfTI ``volume``; returns the mask as .nii.gz (uint8, same
        shape and affine)."""
        from starlette.responses import Response

        try:
            vol, mask, seconds = self._infer(volume, "segment")
        except InputRejected as err:
            return _error_response(err)
        return Response(  # type: ignore[return-value]
            mask_nifti_gz(mask, vol),
            media_type=NIFTI_GZ,
            headers={
                "content-disposition": 'attachment; filename="mask.nii.gz"',
                "x-inference-seconds": f"{seconds:.4f}",
            },
        )

    @bentoml.api(route="/summary")
    def summary(self, volume: Path) -> VolumeSummary:
        """Segment ``volume`` and return counts: vessel voxels and vessel volume in µm³."""
        try:
            vol, mask, seconds = self._infer(volume, "summary")
        except InputRejected as err:
            return _error_response(err)
        n_vessel = int((mask > 0).sum())
        total = vol.info.n_voxels
        return VolumeSummary(
            shape=vol.info.shape,
            spacing_um=vol.info.spacing_um,
            spacing_unit_assumed=vol.info.spacing_unit_assumed,
            voxel_count=total,
            vessel_voxel_count=n_vessel,
            vessel_fraction=n_vessel / total,
            vessel_volume_um3=n_vessel * vol.voxel_volume_um3,
            backend=self.backend,
            inference_seconds=seconds,
        )


def _metrics_text() -> bytes:
    """The Prometheus exposition of every worker (BentoML's multiprocess registry)."""
    from bentoml._internal.configuration.containers import BentoMLContainer

    return bytes(BentoMLContainer.metrics_client.get().generate_latest())


def _guard_options() -> dict[str, Any]:
    """The guard's limits and token, from the same settings the service reads."""
    settings = load_serve_settings()
    return {
        "max_upload_bytes": settings.max_upload_bytes,
        "token": settings.auth_token(),
        "routes": PROTECTED_ROUTES,
        "max_concurrency": settings.max_concurrency,
        "metrics_text": _metrics_text,
        "metrics_token": settings.metrics_require_token,
        "record": True,
    }


# bentoml.service returns a Service; its annotations type the result as the decorated class.
MinivessSegmenter.add_asgi_middleware(RequestGuard, **_guard_options())  # type: ignore[attr-defined]
