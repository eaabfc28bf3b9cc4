"""Checkpoints on a local disk or any S3-compatible store, written atomically.

Layout of a run's checkpoint directory (local path or ``s3://bucket/prefix``):

* ``last.pt``: the full resumable state, rewritten every epoch (and on SIGTERM);
* ``best.pt``: the weights with the best validation Dice so far;
* ``split.json``: the fold split the run trained on; ``plan.json``: the training plan.

Every checkpoint embeds the plan JSON, so :func:`load_model` rebuilds the network anywhere with
:func:`minivess.models.build_model`. Files load with ``torch.load(weights_only=True)``: they hold
only tensors, numbers and strings.

S3 endpoint: the ``endpoint_url`` each function takes, which callers pass from
:class:`minivess.settings.Settings` (``storage.s3.endpoint_url``: ``configs/storage.yaml`` or
``MINIVESS_S3_ENDPOINT_URL``); None means AWS itself. Credentials come from the usual AWS
environment or profile. Checksums are ``when_required`` for S3-compatible stores.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from minivess.errors import MinivessError

if TYPE_CHECKING:
    from torch import nn

    from minivess.planning.plan import TrainingPlan

LAST = "last.pt"
BEST = "best.pt"
SPLIT = "split.json"
PLAN = "plan.json"


class CheckpointError(MinivessError):
    """A checkpoint cannot be read or written."""


def is_s3(uri: str | Path) -> bool:
    """True for ``s3://`` URIs."""
    return str(uri).startswith("s3://")


def join(base: str | Path, name: str) -> str:
    """``base/name`` for local paths and S3 URIs alike."""
    return f"{str(base).rstrip('/')}/{name}"


def _split_s3(uri: str) -> tuple[str, str]:
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket or not key:
        raise CheckpointError(f"{uri}: expected s3://bucket/key.")
    return bucket, key


def _client(endpoint_url: str | None) -> Any:
    from minivess.tracking.storage import s3_client

    return s3_client(endpoint_url)


def write_bytes(uri: str | Path, data: bytes, endpoint_url: str | None = None) -> str:
    """Write ``data`` atomically: a temp file + ``os.replace`` locally, one PUT on S3.

    A reader never sees a half-written file; a crash leaves the previous version in place.
    """
    uri = str(uri)
    if is_s3(uri):
        from botocore.exceptions import BotoCoreError, ClientError

        bucket, key = _split_s3(uri)
        try:
            _client(endpoint_url).put_object(Bucket=bucket, Key=key, Body=data)
        except (BotoCoreError, ClientError) as err:
            raise CheckpointError(
                f"{uri}: upload failed ({err}); check the bucket/endpoint."
            ) from err
        return uri
    path = Path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return str(path)


def clean_orphans(directory: str | Path) -> list[Path]:
    """Delete the temp files a killed writer left in a local checkpoint ``directory``.

    :func:`write_bytes` writes ``.<name>.<random>.tmp`` and renames it; a SIGKILL between the
    two leaves the temp file behind. Call this at the start of a run (one writer per
    directory). S3 writes are single PUTs and leave nothing. Returns the deleted paths.
    """
    if is_s3(directory) or not Path(directory).is_dir():
        return []
    removed = []
    for tmp in Path(directory).glob(".*.tmp"):
        tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed


def read_bytes(uri: str | Path, endpoint_url: str | None = None) -> bytes:
    """Read a whole local file or S3 object.

    Raises:
        CheckpointError: naming the URI when it does not exist or cannot be read.
    """
    uri = str(uri)
    if is_s3(uri):
        from botocore.exceptions import BotoCoreError, ClientError

        bucket, key = _split_s3(uri)
        try:
            return _client(endpoint_url).get_object(Bucket=bucket, Key=key)["Body"].read()
        except (BotoCoreError, ClientError) as err:
            raise CheckpointError(f"{uri}: cannot read checkpoint ({err}).") from err
    path = Path(uri)
    if not path.is_file():
        raise CheckpointError(f"{uri}: checkpoint not found; check the path or --checkpoints.")
    return path.read_bytes()


def exists(uri: str | Path, endpoint_url: str | None = None) -> bool:
    """True when the local file or S3 object exists."""
    uri = str(uri)
    if not is_s3(uri):
        return Path(uri).is_file()
    from botocore.exceptions import ClientError

    bucket, key = _split_s3(uri)
    try:
        _client(endpoint_url).head_object(Bucket=bucket, Key=key)
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return False
        raise CheckpointError(f"{uri}: cannot check checkpoint ({err}).") from err
    return True


def save_state(state: dict[str, Any], uri: str | Path, endpoint_url: str | None = None) -> str:
    """Serialise ``state`` with ``torch.save`` and write it atomically to ``uri``."""
    import torch

    buf = io.BytesIO()
    torch.save(state, buf)
    return write_bytes(uri, buf.getvalue(), endpoint_url)


def load_state(
    uri: str | Path, map_location: str = "cpu", endpoint_url: str | None = None
) -> dict[str, Any]:
    """Load a state written by :func:`save_state` (``weights_only=True``)."""
    import torch

    data = read_bytes(uri, endpoint_url)
    try:
        return torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises several types for a corrupt file
        raise CheckpointError(f"{uri}: not a readable minivess checkpoint ({err}).") from err


def resolve(uri: str | Path) -> str:
    """A checkpoint file URI: ``uri`` itself, or ``uri/best.pt`` for a run directory."""
    uri = str(uri)
    return uri if uri.endswith(".pt") else join(uri, BEST)


def model_from_state(state: dict[str, Any], uri: str | Path) -> tuple[nn.Module, TrainingPlan]:
    """The network of a loaded checkpoint state, rebuilt from its embedded plan, with weights.

    The plan carries the network block (builder and params), so the current model profile is not
    consulted. An older checkpoint (plan without it) that no longer fits today's profile fails
    with the plan fields that differ, not a raw ``load_state_dict`` error.

    Raises:
        CheckpointError: no embedded plan/model, an unreadable plan, or weights that do not fit.
    """
    from pydantic import ValidationError

    from minivess.models import build_model
    from minivess.planning.plan import TrainingPlan

    if "plan" not in state or "model" not in state:
        raise CheckpointError(f"{uri}: no embedded plan/model; was it written by minivess train?")
    try:
        plan = TrainingPlan.model_validate_json(state["plan"])
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "plan"
        raise CheckpointError(
            f"{uri}: embedded plan is not readable by this minivess ({where}: {first['msg']}); "
            "retrain, or evaluate it with the minivess version that wrote it."
        ) from None
    model = build_model(plan, in_channels=1, out_channels=int(state.get("out_channels", 2)))
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:
        raise CheckpointError(
            f"{uri}: weights do not fit the network built for plan {plan.plan_hash} "
            f"({_changed_fields(plan)}); retrain, or restore the profile it was trained with "
            f"({str(err).splitlines()[0]})."
        ) from None
    return model, plan


def _changed_fields(plan: TrainingPlan) -> str:
    """Which network fields of the current profile differ from the plan's, for error messages."""
    from minivess.planning.planner import plan_network
    from minivess.planning.profiles import load_model_profile

    try:
        current = plan_network(load_model_profile(plan.model))
    except Exception as err:  # the profile itself may be gone or broken: say so
        return f"model profile '{plan.model}' unavailable: {err}"
    if plan.network is None:
        return "the checkpoint's plan predates network params; the profile may have changed"
    a, b = plan.network.model_dump(mode="json"), current.model_dump(mode="json")
    changed = [
        f"network.params.{k}: {a['params'].get(k)!r} -> {b['params'].get(k)!r}"
        for k in sorted(set(a["params"]) | set(b["params"]))
        if a["params"].get(k) != b["params"].get(k)
    ]
    changed += [f"network.{k}" for k in ("builder", "entry_point") if a[k] != b[k]]
    return "changed in the profile: " + ", ".join(changed) if changed else "profile unchanged"


def load_model(
    uri: str | Path, map_location: str = "cpu", endpoint_url: str | None = None
) -> tuple[nn.Module, TrainingPlan]:
    """Rebuild the network of a checkpoint (file or run directory) with its weights.

    Returns:
        ``(model in eval mode, plan)``; the plan is the one embedded in the checkpoint.

    Raises:
        CheckpointError: see :func:`model_from_state`.
    """
    file = resolve(uri)
    model, plan = model_from_state(load_state(file, map_location, endpoint_url), file)
    model.to(map_location)
    model.eval()
    return model, plan


def spacing_json(resampling: Any) -> str:
    """The ``target_spacing`` entry of a checkpoint: JSON list (x, y, z, header units) of the
    grid the model trained on, or ``null`` when training ran at native resolution."""
    if not resampling.enabled:
        return "null"
    return json.dumps([float(v) for v in resampling.target_spacing])


def target_spacing(state: dict[str, Any]) -> tuple[float, float, float] | None:
    """The training grid's spacing recorded in a checkpoint ``state`` (None: native grid).

    Older checkpoints without the entry fall back to their embedded config's resampling.
    """
    if "target_spacing" in state:
        value = json.loads(state["target_spacing"])
    else:
        value = json.loads(state.get("config", "{}")).get("resampling") or {}
        value = value.get("target_spacing") if value.get("enabled") else None
    if value is None:
        return None
    return float(value[0]), float(value[1]), float(value[2])


def checkpoint_meta(uri: str | Path, endpoint_url: str | None = None) -> dict[str, Any]:
    """Everything but the tensors of a checkpoint: plan/config JSON, metric, epoch, fold, loss."""
    state = load_state(resolve(uri), endpoint_url=endpoint_url)
    return {
        k: v for k, v in state.items() if k not in ("model", "optimizer", "scheduler", "scaler")
    }
