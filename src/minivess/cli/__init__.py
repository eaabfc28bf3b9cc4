"""The ``minivess`` command line. Each area lives in its own module and registers its commands.

Importing this package must stay cheap: no torch, mlflow, sky or bentoml at import time.
Command bodies import what they need.
"""

from __future__ import annotations

import logging
import sys

import typer

from minivess.cli import data, flows, launch, planning, serving, training
from minivess.errors import MinivessError

app = typer.Typer(
    name="minivess",
    help="Profile 3D segmentation data, plan safe training settings, train, evaluate and serve.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(
    help="The data engineer's tools: synthesise, profile, version.", no_args_is_help=True
)
app.add_typer(data_app, name="data")

for _module in (data, planning, training, launch, serving, flows):
    _module.register(app, data_app)


def main() -> None:
    """Console-script entry point: run the app, print project errors on one line."""
    from rich.logging import RichHandler

    logging.basicConfig(
        level=logging.INFO, format="%(message)s", handlers=[RichHandler(show_path=False)]
    )
    for noisy in ("httpx", "httpcore", "urllib3", "botocore", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        app()
    except MinivessError as err:
        _fail(str(err))
    except RuntimeError as err:
        if not str(err).startswith(PREFECT_STARTUP_TIMEOUT):
            raise
        from minivess.orchestration.common import TEMPORARY_SERVER_STARTUP_S

        _fail(
            "Prefect's temporary API server did not start in time (a busy machine?); raise "
            f"PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS above {TEMPORARY_SERVER_STARTUP_S}, "
            "or run `prefect server start` and set PREFECT_API_URL=http://127.0.0.1:4200/api, "
            "then rerun"
        )


#: How Prefect's ephemeral server start-up timeout begins (a RuntimeError, prefect 3.9).
PREFECT_STARTUP_TIMEOUT = "Timed out while attempting to connect to ephemeral Prefect API server"


def _fail(message: str) -> None:
    from rich.console import Console

    Console(stderr=True).print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    sys.exit(2)
