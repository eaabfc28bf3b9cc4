"""CLI commands of this area (registered by :mod:`minivess.cli`)."""

from __future__ import annotations

import typer


def register(app: typer.Typer, data_app: typer.Typer) -> None:
    """Add this area's commands to the root app and the ``data`` sub-app."""
