"""CLI commands of this area (registered by :mod:`minivess.cli`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer


def register(app: typer.Typer, data_app: typer.Typer) -> None:
    """Add this area's commands to the root app and the ``data`` sub-app."""

    @app.command("serve")
    def serve(
        model_uri: Annotated[
            str | None,
            typer.Option(
                "--model-uri",
                help="Serving bundle dir, checkpoint (.pt or run dir) or models:/<name>/<ver>; "
                "default MINIVESS_SERVE_MODEL_PATH, else the workspace registry's @champion.",
            ),
        ] = None,
        port: Annotated[int, typer.Option(help="TCP port.")] = 3000,
        host: Annotated[str, typer.Option(help="Bind address (loopback by default).")] = (
            "127.0.0.1"
        ),
        backend: Annotated[
            str | None, typer.Option(help="onnx or torch (default: settings, else onnx).")
        ] = None,
        config: Annotated[
            Path | None, typer.Option(help="YAML with serve settings (see docs/serving.md).")
        ] = None,
        workdir: Annotated[
            Path | None, typer.Option(help="Where exported bundles go (default workspace/deploy).")
        ] = None,
        workspace: Annotated[
            Path | None,
            typer.Option(
                help="Workspace (its MLflow registry and deploy dir); default ./workspace."
            ),
        ] = None,
        auth_token_env: Annotated[
            str | None,
            typer.Option(help="NAME of the env var holding the bearer token; enables auth."),
        ] = None,
    ) -> None:
        """Serve a model locally with BentoML: POST /segment, POST /summary, /metrics."""
        from minivess.serving.local import serve_model
        from minivess.serving.settings import load_serve_settings
        from minivess.settings import load_settings

        overrides: dict[str, Any] = {"auth_token_env": auth_token_env} if auth_token_env else {}
        settings = load_serve_settings(config, backend=backend, **overrides)
        work = workdir or load_settings(workspace).deploy_dir / "serve"
        raise typer.Exit(serve_model(model_uri, settings, work, port, host, workspace))
