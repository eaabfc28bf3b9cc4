"""A member logged as an MLflow pyfunc model, registered with ``@champion``, loaded the way MLflow
users load it, against a real `mlflow server` whose artifacts live on a moto S3 server."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from minivess.errors import ContractError
from minivess.settings import load_settings
from minivess.tracking import mlflow_adapter as mfa
from minivess.tracking.contract import CHAMPION_ALIAS, Flow, Tag

pytestmark = pytest.mark.slow


@pytest.fixture
def client(mlflow_server: str, moto_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.setenv("MINIVESS_S3_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("MLFLOW_S3_ENDPOINT_URL", moto_endpoint)  # what an MLflow user sets
    settings = load_settings(tmp_path / "ws")
    return settings, mfa.connect(settings)


def _checkpoint(path: Path, plan_factory) -> Path:
    """A real minivess checkpoint of an untrained tiny DynUNet (what `train` writes)."""
    import torch

    from minivess.models import build_model
    from minivess.training.checkpoint import save_state

    plan = plan_factory()
    torch.manual_seed(0)
    net = build_model(plan, in_channels=1, out_channels=2)
    save_state({"plan": plan.model_dump_json(), "model": net.state_dict(), "out_channels": 2}, path)
    return path


def test_champion_alias_loads_as_pyfunc_and_predicts_a_mask_from_a_nifti_volume(
    client, tmp_path: Path, tiny_data: Path, plan_factory
) -> None:
    import mlflow
    import nibabel as nib

    from minivess.orchestration.train_flow import log_member_model
    from minivess.tracking.pyfunc import MODEL_NAME

    settings, c = client
    name = "mv-pyfunc-champion"
    ckpt = _checkpoint(tmp_path / "best.pt", plan_factory)
    with mfa.flow_run(c, settings, Flow.TRAIN, run_name="member") as run:
        model_uri = log_member_model(str(ckpt), settings)
    run = c.get_run(run.info.run_id)
    assert run.data.tags[Tag.MODEL_URI.value] == model_uri
    # MLflow users see a logged model with a signature and an input example.
    info = mlflow.models.get_model_info(model_uri)
    assert info.name == MODEL_NAME and info.signature is not None
    assert tuple(info.signature.inputs.to_dict()[0]["tensor-spec"]["shape"]) == (-1, -1, -1)
    assert info.saved_input_example_info is not None

    plan = {"model": "dynunet", "patch_size": [16, 16, 4], "plan_hash": "abc123"}
    desc = mfa.version_description("dynunet-dicece-fold0", {"dice": 0.71}, plan, "held-out")
    v = mfa.register_model(c, model_uri, run_id=run.info.run_id, name=name,
                           expected_files=["artifacts/best.pt", "MLmodel"], metrics={"dice": 0.71},
                           description=desc, alias=CHAMPION_ALIAS)  # fmt: skip
    mv = c.get_model_version(name, v.version)
    assert "dice 0.710" in mv.description and "abc123" in mv.description
    assert mfa.aliased_version(c, name).version == v.version

    model = mlflow.pyfunc.load_model(f"models:/{name}@{CHAMPION_ALIAS}")
    image = next((tiny_data / "raw").glob("*.nii*"))
    volume = np.asarray(nib.load(image).dataobj, dtype=np.float32)
    mask = model.predict(volume)
    assert mask.shape == volume.shape and mask.dtype == np.uint8
    assert set(np.unique(mask)) <= {0, 1}
    # The same weights through minivess's own segmenter give the same mask.
    from minivess.serving.inference import Segmenter, torch_predictor
    from minivess.serving.settings import Backend
    from minivess.training.checkpoint import load_model

    net, tplan = load_model(str(ckpt))
    expected = Segmenter(torch_predictor(net), tplan, Backend.TORCH).segment(volume)
    np.testing.assert_array_equal(mask, expected)


def test_a_missing_alias_is_a_contract_error_naming_the_fix(client) -> None:
    _, c = client
    c.create_registered_model("mv-no-alias")
    with pytest.raises(ContractError, match=r"no alias @champion.*flows run analysis"):
        mfa.aliased_version(c, "mv-no-alias")
