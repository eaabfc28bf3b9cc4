"""The CLI root: every area registered, and no heavy library imported to show help."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "mlflow", "sky", "bentoml", "monai", "prefect", "dvc")


def test_help_imports_no_heavy_library() -> None:
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from minivess.cli import app\n"
        "result = CliRunner().invoke(app, ['--help'])\n"
        "assert result.exit_code == 0, result.output\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_every_area_is_registered() -> None:
    from typer.testing import CliRunner

    from minivess.cli import app

    result = CliRunner().invoke(app, ["--help"])
    for command in ("data", "plan", "calibrate", "train", "evaluate", "launch", "serve",
                    "experiment", "flows", "stack"):  # fmt: skip
        assert command in result.output, command
    data_help = CliRunner().invoke(app, ["data", "--help"]).output
    for command in ("synth", "profile", "version", "pull", "changed"):
        assert command in data_help, command


def test_project_errors_are_one_line_with_exit_code_2(tmp_path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "minivess", "experiment", "--config", str(tmp_path / "nope.yaml")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "error:" in proc.stderr and "nope.yaml: file not found" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_prefect_startup_timeout_is_one_line_not_a_traceback(monkeypatch, capsys) -> None:
    """Prefect's temporary server did not come up: one line with the fix, exit code 2.

    The timeout itself cannot be provoked reliably here, so the app raises Prefect's own
    error text (prefect 3.9 ``SubprocessASGIServer.start``).
    """
    import pytest

    import minivess.cli as cli

    def app() -> None:
        raise RuntimeError(cli.PREFECT_STARTUP_TIMEOUT + ". stdout: ... stderr: ...")

    monkeypatch.setattr(cli, "app", app)
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS" in err and "Traceback" not in err
