"""Validate a rendered task with SkyPilot's own code, offline, in an isolated SkyPilot home.

:func:`validate_task` runs ``python -m minivess.launch.skycheck`` in a child process whose
``HOME`` and ``SKY_RUNTIME_DIR`` point at a minivess-owned runtime dir, because ``import sky``
writes under ``~/.sky`` and SkyPilot fixes its catalog path at import time. The child:

1. writes a small accelerators catalog (``.sky/catalogs/<v>/common/accelerators.csv``, columns
   ``AcceleratorName,Clouds``; without a ``.meta/*.md5`` SkyPilot treats it as user-made and
   never downloads it), and for an SSH pool the state ``sky ssh up`` leaves behind (the pool
   entry and a ``ssh-<pool>`` kube context, never contacted);
2. runs ``sky.Task.from_yaml`` (schema, "did you mean"), ``Task.validate()`` and, for a service,
   ``sky.serve.serve_utils.validate_service_task``;
3. prints one JSON line: ``{"ok": bool, "stage": ..., "error": ...}``.

The real user's ``~/.sky`` is never touched.

A task SkyPilot accepted is remembered (:class:`ValidationCache`, under the runtime dir): the
same task bytes, offline state, local paths, SkyPilot version and this module validate again
without starting SkyPilot, so a repeated dry run does not pay ``import sky`` (seconds). Only
acceptances are kept; a rejection is always SkyPilot's fresh message.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from minivess.errors import ConfigError
from minivess.settings import process_environ

#: Hints appended to SkyPilot's verbatim message, matched on its text (first match wins).
HINTS: tuple[tuple[str, str], ...] = (
    ("did you mean", "fix the key's spelling in the template ({template}) or the target YAML"),
    (
        "Invalid task YAML",
        "the template ({template}) or target YAML has a field SkyPilot "
        "does not know; see https://docs.skypilot.co/en/latest/reference/yaml-spec.html",
    ),
    (
        "Invalid resources YAML",
        "a resources field in the template ({template}) or target "
        "YAML is wrong; see https://docs.skypilot.co/en/latest/reference/yaml-spec.html",
    ),
    (
        "job_recovery is disabled",
        "remove job_recovery from the serve target: SkyServe "
        "replaces preempted replicas itself (use replica_policy.base_ondemand_fallback_replicas "
        "or dynamic_ondemand_fallback)",
    ),
    ("either all use spot", "set use_spot for all candidates or none"),
    ("does not exist", "check --data / data.source and the workdir"),
    ("SSH Node Pool", "check pool.name in the ssh target"),
)
DEFAULT_HINT = "see https://docs.skypilot.co/en/latest/reference/yaml-spec.html"


def default_runtime_dir() -> Path:
    """Isolated SkyPilot home for offline validation (never the user's ~/.sky), in the cache."""
    from minivess.settings import cache_root

    return cache_root() / "sky-offline"


class SkyValidationError(ConfigError):
    """SkyPilot rejected a rendered task."""


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    stage: str = ""
    error: str = ""
    #: SkyPilot accepted these exact bytes before (:class:`ValidationCache`); not rerun.
    cached: bool = False


def hint_for(message: str, template: str) -> str:
    """Our hint for a SkyPilot error message."""
    for needle, hint in HINTS:
        if needle.lower() in message.lower():
            return hint.format(template=template)
    return DEFAULT_HINT


@dataclass(frozen=True)
class CheckItem:
    """One task to validate: its file, whether it is a service, and what it needs offline."""

    path: str
    serve: bool = False
    accelerators: tuple[str, ...] = ()
    clouds: tuple[str, ...] = ()
    pool: str | None = None


def _write_atomic(path: Path, text: str) -> None:
    """Write via a temp file + rename: concurrent validations never read half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _write_offline_state(runtime: Path, items: list[CheckItem]) -> None:
    """Catalog + SSH pool state so ``Task.validate()`` needs no network (see module doc)."""
    from sky.skylet import constants

    catalog = runtime / ".sky" / "catalogs" / constants.CATALOG_SCHEMA_VERSION / "common"
    catalog.mkdir(parents=True, exist_ok=True)
    names = sorted({a.split(":", 1)[0] for i in items for a in i.accelerators})
    clouds = sorted({c.split("/", 1)[0].upper() for i in items for c in i.clouds})
    cloud_list = repr(clouds or ["AWS", "GCP", "AZURE"])
    rows = ["AcceleratorName,Clouds", *(f'{n},"{cloud_list}"' for n in names)]
    _write_atomic(catalog / "accelerators.csv", "\n".join(rows) + "\n")
    wanted = {i.pool for i in items if i.pool}
    if wanted:
        home = Path(process_environ()["HOME"])
        known = home / ".sky" / "ssh_node_pools.yaml"
        if known.is_file():  # keep pools other validations (maybe running now) rely on
            wanted |= {
                line.split(":", 1)[0]
                for line in known.read_text().splitlines()
                if line and not line.startswith(" ")
            }
        pools = sorted(wanted)
        (home / ".sky").mkdir(parents=True, exist_ok=True)
        _write_atomic(
            home / ".sky" / "ssh_node_pools.yaml",
            "".join(f"{p}:\n  hosts: [offline-validation]\n" for p in pools),
        )
        (home / ".kube").mkdir(parents=True, exist_ok=True)
        ctxs = [f"ssh-{p}" for p in pools]
        _write_atomic(
            home / ".kube" / "config",
            "apiVersion: v1\nkind: Config\nclusters:\n"
            + "".join(f"- name: {c}\n  cluster: {{server: 'https://127.0.0.1:9'}}\n" for c in ctxs)
            + "contexts:\n"
            + "".join(f"- name: {c}\n  context: {{cluster: {c}, user: {c}}}\n" for c in ctxs)
            + f"current-context: {ctxs[0]}\nusers:\n"
            + "".join(f"- name: {c}\n  user: {{}}\n" for c in ctxs),
        )


def check_in_process(path: Path, serve: bool) -> CheckResult:
    """Run SkyPilot's parser and validators on ``path`` in this process."""
    from sky.serve import serve_utils

    import sky

    try:
        task = sky.Task.from_yaml(str(path))
    except Exception as err:  # SkyPilot raises several types; we report them verbatim
        return CheckResult(False, "parse", str(err))
    try:
        task.validate()
    except Exception as err:
        return CheckResult(False, "validate", str(err))
    if serve:
        try:
            serve_utils.validate_service_task(task, pool=False)
        except Exception as err:
            return CheckResult(False, "service", str(err))
    return CheckResult(True)


def skypilot_version() -> str:
    """The installed SkyPilot's version, read from its metadata (``sky`` is not imported)."""
    from importlib.metadata import version

    return version("skypilot")


def _local_paths(task: object) -> list[str]:
    """The local paths SkyPilot checks when validating ``task``: the workdir and local
    ``file_mounts`` sources (bucket URLs are not checked offline)."""
    if not isinstance(task, dict):
        return []
    sources: list[object] = [task.get("workdir")]
    for src in (task.get("file_mounts") or {}).values():
        sources.append(src.get("source") if isinstance(src, dict) else src)
    flat = [s for src in sources for s in (src if isinstance(src, list) else [src])]
    return [s for s in flat if isinstance(s, str) and "://" not in s]


class ValidationCache:
    """SkyPilot's acceptances, keyed by everything the verdict depends on.

    The key hashes the task file's bytes, the item's offline state (accelerators, clouds,
    pool), whether each local path the task names exists (and is a folder), SkyPilot's version
    and this module's source (the validation procedure). Entries are small JSON files under
    ``<runtime dir>/validated``; delete that folder to make every task validate afresh.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def key(self, item: CheckItem) -> str:
        import yaml

        text = Path(item.path).read_bytes()
        try:
            paths = _local_paths(yaml.safe_load(text))
        except yaml.YAMLError:
            paths = []  # SkyPilot reports the YAML error; the bytes alone are the key
        digest = hashlib.sha256()
        for part in (
            f"skypilot {skypilot_version()}".encode(),
            Path(__file__).read_bytes(),
            json.dumps({**asdict(item), "path": None}, sort_keys=True).encode(),
            text,
            *(f"{p}\0{self._state(p)}".encode() for p in paths),
        ):
            digest.update(hashlib.sha256(part).digest())
        return digest.hexdigest()

    def _state(self, path: str) -> str:
        """Whether ``path`` exists (and is a folder) as the SkyPilot child resolves it: ``~`` is
        its isolated home, a relative path is below its working dir (the runtime dir)."""
        runtime = self.root.parent
        full = Path(path.replace("~", str(runtime / "home"), 1) if path[:1] == "~" else path)
        full = full if full.is_absolute() else runtime / full
        return f"{full.exists()}/{full.is_dir()}"

    def get(self, key: str) -> CheckResult | None:
        """The cached acceptance for ``key``, or None."""
        return CheckResult(True, cached=True) if (self.root / f"{key}.json").is_file() else None

    def put(self, key: str, result: CheckResult) -> None:
        """Remember ``result`` when SkyPilot accepted the task (rejections are not kept)."""
        if not result.ok:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        entry = {"skypilot": skypilot_version(), "accepted_at": datetime.now(UTC).isoformat()}
        _write_atomic(self.root / f"{key}.json", json.dumps(entry) + "\n")


class SkyValidator:
    """An isolated SkyPilot child started early: it imports ``sky`` while the caller plans and
    renders, then validates the tasks sent to :meth:`validate`. Use as a context manager.

    Tasks SkyPilot accepted before (:class:`ValidationCache`) are answered from the cache; when
    every task is, the child is stopped unused."""

    def __init__(self, runtime_dir: Path) -> None:
        runtime_dir = Path(runtime_dir).expanduser().absolute()
        self.cache = ValidationCache(runtime_dir / "validated")
        env = _isolated_env(runtime_dir)
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "minivess.launch.skycheck", "--stdin"],
            env=env,
            cwd=str(runtime_dir),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def validate(self, items: list[CheckItem], timeout_s: float = 180.0) -> list[CheckResult]:
        """Validate ``items`` (once per validator): from the cache, else with SkyPilot.

        Raises:
            SkyValidationError: the child did not report (crash, timeout).
        """
        keys = [self.cache.key(i) for i in items]
        known = [self.cache.get(k) for k in keys]
        todo = [i for i, hit in zip(items, known, strict=True) if hit is None]
        if not todo:
            self.close()
            return [hit for hit in known if hit is not None]
        fresh = iter(self._run_child(todo, timeout_s))
        results = [hit if hit is not None else next(fresh) for hit in known]
        for key, hit, result in zip(keys, known, results, strict=True):
            if hit is None:
                self.cache.put(key, result)
        return results

    def _run_child(self, items: list[CheckItem], timeout_s: float) -> list[CheckResult]:
        """Send ``items`` to the SkyPilot child and read one result per item."""
        spec = [dict(asdict(i), path=str(Path(i.path).absolute())) for i in items]
        try:
            out, err = self._proc.communicate(json.dumps(spec), timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.close()
            raise SkyValidationError(f"SkyPilot validation took over {timeout_s:g} s") from None
        results = [
            CheckResult(**json.loads(line)) for line in out.splitlines() if line.startswith('{"ok"')
        ]
        if len(results) != len(items):
            tail = (err or out).strip().splitlines()[-3:]
            raise SkyValidationError(
                f"SkyPilot validation did not run (exit {self._proc.returncode}): "
                + " | ".join(tail)
            )
        return results

    def close(self) -> None:
        """Stop the child if it is still running."""
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.communicate()

    def __enter__(self) -> SkyValidator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def validate_many(
    items: list[CheckItem], runtime_dir: Path, timeout_s: float = 180.0
) -> list[CheckResult]:
    """Validate several tasks in one isolated child process (one ``import sky``)."""
    with SkyValidator(runtime_dir) as validator:
        return validator.validate(items, timeout_s)


def raise_for(result: CheckResult, path: Path, template: str) -> None:
    """Raise SkyPilot's message verbatim, the stage, and our hint, when ``result`` failed.

    Raises:
        SkyValidationError
    """
    if not result.ok:
        raise SkyValidationError(
            f"{path}: SkyPilot rejected the task ({result.stage}): {result.error.strip()} "
            f"Hint: {hint_for(result.error, template)}."
        )


def validate_task(
    path: Path,
    *,
    serve: bool,
    runtime_dir: Path,
    accelerators: list[str],
    clouds: list[str] | None = None,
    pool: str | None = None,
    template: str = "sky/train.yaml",
) -> None:
    """Validate ``path`` with SkyPilot offline, in an isolated child process.

    Raises:
        SkyValidationError: SkyPilot's message verbatim, the stage, and our hint.
    """
    item = CheckItem(str(path), serve, tuple(accelerators), tuple(clouds or ()), pool)
    raise_for(validate_many([item], runtime_dir)[0], path, template)


def _isolated_env(runtime_dir: Path) -> dict[str, str]:
    """The environment of a SkyPilot child: its own HOME / SKY_RUNTIME_DIR (never ~/.sky)."""
    home = runtime_dir / "home"
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in process_environ().items() if not k.startswith("SKYPILOT_")}
    env.update(
        KUBECONFIG=str(home / ".kube" / "config"),
        HOME=str(home),
        SKY_RUNTIME_DIR=str(runtime_dir),
        SKYPILOT_DISABLE_USAGE_COLLECTION="1",
        PYTHONWARNINGS="ignore",
    )
    return env


def task_as_node_sees_it(path: Path) -> dict[str, object]:
    """Read ``path`` with ``sky.Task.from_yaml`` (in this process) and return what a node runs:
    setup, run, envs, secret names, num_nodes, workdir, the mounts with their modes and, for a
    service, its readiness probe as SkyServe parsed it."""
    import yaml

    import sky

    task = sky.Task.from_yaml(str(path))
    # Null-valued secrets (names only, filled by `--secret NAME`) are not kept by the parser.
    declared = (yaml.safe_load(Path(path).read_text()) or {}).get("secrets") or {}
    mounts: dict[str, dict[str, str | None]] = {}
    for dst, src in (task.file_mounts or {}).items():
        mounts[dst] = {"source": str(src), "mode": "COPY"}
    for dst, storage in (task.storage_mounts or {}).items():
        mode = getattr(storage.mode, "value", storage.mode)
        mounts[dst] = {"source": str(storage.source), "mode": str(mode)}
    out: dict[str, object] = {
        "setup": task.setup,
        "run": task.run,
        "envs": dict(task.envs),
        "secrets": sorted(set(task.secrets) | set(declared)),
        "num_nodes": task.num_nodes,
        "workdir": task.workdir,
        "mounts": mounts,
    }
    if task.service is not None:  # what SkyServe's controller probes, as it parsed the spec
        svc = task.service
        out["service"] = {
            "readiness_path": svc.readiness_path,
            "initial_delay_seconds": svc.initial_delay_seconds,
            "readiness_timeout_seconds": svc.readiness_timeout_seconds,
            "probe_interval_seconds": svc.endpoint_probe_interval_seconds,
            "post_data": svc.post_data,
            "readiness_headers": svc.readiness_headers,
            "ports": svc.ports,
        }
    return out


def read_task(path: Path, runtime_dir: Path, timeout_s: float = 180.0) -> dict[str, object]:
    """:func:`task_as_node_sees_it` in an isolated SkyPilot child process.

    Raises:
        SkyValidationError: SkyPilot could not read the task (its message verbatim).
    """
    runtime_dir = Path(runtime_dir).expanduser().absolute()
    proc = subprocess.run(
        [sys.executable, "-m", "minivess.launch.skycheck", "--read", str(Path(path).absolute())],
        env=_isolated_env(runtime_dir),
        cwd=str(runtime_dir),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith('{"task"')]
    if proc.returncode != 0 or not lines:
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        raise SkyValidationError(f"{path}: sky.Task.from_yaml failed: {tail}")
    return json.loads(lines[-1])["task"]


def main(argv: list[str] | None = None) -> int:
    """Child-process entry point: one JSON line per task, in order.

    ``--stdin``: import SkyPilot first, then read the task list (JSON) from stdin.
    ``--read PATH``: print ``{"task": ...}`` (:func:`task_as_node_sees_it`).
    """
    args = argv if argv is not None else sys.argv[1:]
    if args[0] == "--read":
        print(json.dumps({"task": task_as_node_sees_it(Path(args[1]))}), flush=True)
        return 0
    if args[0] == "--stdin":
        from sky.serve import serve_utils  # noqa: F401

        import sky  # noqa: F401  (warm up while the parent plans)

        raw = sys.stdin.read()
    else:
        raw = args[0]
    items = [
        CheckItem(**{**d, "accelerators": tuple(d["accelerators"]), "clouds": tuple(d["clouds"])})
        for d in json.loads(raw)
    ]
    _write_offline_state(Path(process_environ()["SKY_RUNTIME_DIR"]), items)
    for item in items:
        result = check_in_process(Path(item.path), item.serve)
        print(json.dumps(result.__dict__), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
