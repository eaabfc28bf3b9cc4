"""Flow 1, the data engineer: discover, validate, profile, QC report, log to ``minivess-data``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prefect import flow, task

from minivess.data.schema import DatasetProfile
from minivess.data.synth import Scale
from minivess.orchestration import common
from minivess.settings import Settings
from minivess.tracking.contract import Artifact, Flow, Tag


@dataclass(frozen=True)
class DataFlowResult:
    """What the data flow hands downstream (besides the MLflow run itself)."""

    run_id: str
    dataset_hash: str
    data_dir: str
    profile_json: str
    report_html: str
    n_volumes: int
    n_rejected: int
    profile_cached: bool


@task
def ensure_data(
    data_dir: str | None, settings: Settings, scale: Scale = "small", seed: int = 0
) -> str:
    """The dataset directory; the embedded default is synthesised on first use."""
    from minivess.data.synth import synthesize

    if data_dir:
        return str(Path(data_dir).resolve())
    target = settings.data_dir
    if not any(target.glob("raw/*.nii*")):
        synthesize(target, scale=scale, seed=seed)
    return str(target.resolve())


@task
def content_hash(data_dir: str) -> str:
    """Content hash of the dataset files: the key of the profile cache."""
    from minivess.data.profiler import dataset_content_hash

    return dataset_content_hash(Path(data_dir))


def _profile_cache_key(_ctx: object, params: dict) -> str:
    """Same content in the same place -> same key (the profile records its directory)."""
    import hashlib

    where = hashlib.sha256(params["data_dir"].encode()).hexdigest()[:12]
    return f"minivess-profile-{params['dataset_hash']}-{where}"


@task(cache_key_fn=_profile_cache_key, persist_result=True)
def profile(data_dir: str, dataset_hash: str) -> DatasetProfile:
    """Profile the dataset; cached on its content hash, so unchanged data is not re-scanned."""
    from minivess.data.profiler import profile_dataset

    return profile_dataset(Path(data_dir))


@task
def qc_report(prof: DatasetProfile, settings: Settings) -> tuple[str, str]:
    """Write the profile JSON and the QC report (HTML + PNGs) into the workspace."""
    from minivess.data.report import write_qc_report

    out = settings.profile_dir
    profile_json = out / Path(Artifact.PROFILE_JSON).name
    profile_json.write_text(prof.model_dump_json(indent=2))
    html = out / Path(Artifact.QC_REPORT).name
    write_qc_report(prof, html, figures_dir=out / "figures")
    return str(profile_json), str(html)


@task
def log_data_run(prof: DatasetProfile, profile_json: str, html: str, settings: Settings) -> str:
    """One run in ``minivess-data``: profile, QC report and figures, hash, quarantined files."""
    from minivess.tracking import mlflow_adapter as mfa

    with mfa.flow_run(
        mfa.connect(settings), settings, Flow.DATA, run_name="data-profile",
        tags={Tag.DATASET_HASH: prof.dataset_hash, Tag.TARGET: "local"},
        params={"data_dir": prof.data_dir, "n_volumes": prof.n_volumes},
        metrics={"n_volumes": prof.n_volumes, "n_rejected": len(prof.rejected),
                 "total_size_gb": prof.total_size_gb, "min_z": prof.min_shape[2]},
    ) as run:  # fmt: skip
        folder = str(Path(Artifact.PROFILE_JSON).parent)
        mfa.log_file(profile_json, folder)
        mfa.log_file(html, folder)
        figures = Path(html).parent / "figures"
        if figures.is_dir():
            mfa.log_dir(figures, Artifact.QC_FIGURES.value)
        mfa.log_dict([r.model_dump() for r in prof.rejected], f"{folder}/quarantined.json")
        return run.info.run_id


@flow(name="minivess-data", log_prints=True)
def data_flow(
    data_dir: str | None = None,
    workspace: str | None = None,
    synth_scale: Scale = "small",
    seed: int = 0,
) -> DataFlowResult:
    """Discover, validate and profile a dataset; log the profile to MLflow."""
    settings = common.settings_for(workspace)
    directory = ensure_data(data_dir, settings, synth_scale, seed)
    state = profile(directory, content_hash(directory), return_state=True)
    prof = state.result()
    profile_json, html = qc_report(prof, settings)
    run_id = log_data_run(prof, profile_json, html, settings)
    common.set_pointer(
        common.PROFILE_POINTER, {"run_id": run_id, "dataset_hash": prof.dataset_hash}
    )
    common.table_artifact(
        "minivess-quarantine",
        [r.model_dump() for r in prof.rejected] or [{"file": "-", "reason": "none rejected"}],
        "Volumes quarantined by validation",
    )
    return DataFlowResult(
        run_id=run_id, dataset_hash=prof.dataset_hash, data_dir=directory,
        profile_json=profile_json, report_html=html,
        n_volumes=prof.n_volumes, n_rejected=len(prof.rejected),
        profile_cached=state.name == "Cached",
    )  # fmt: skip
