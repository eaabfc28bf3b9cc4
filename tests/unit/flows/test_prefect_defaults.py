"""minivess's Prefect defaults: scoped to the block, and a user's own setting wins."""

from __future__ import annotations

import pytest
from prefect.settings import (
    PREFECT_SERVER_ANALYTICS_ENABLED,
)
from prefect.settings import (
    PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS as STARTUP,
)

from minivess.orchestration.common import TEMPORARY_SERVER_STARTUP_S, prefect_defaults


def test_the_temporary_server_gets_time_to_start_and_no_analytics_inside_the_block_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", raising=False)
    monkeypatch.delenv("PREFECT_SERVER_ANALYTICS_ENABLED", raising=False)
    before = STARTUP.value()
    assert before < TEMPORARY_SERVER_STARTUP_S  # Prefect's default is what the main job hit
    with prefect_defaults():
        assert STARTUP.value() == TEMPORARY_SERVER_STARTUP_S
        assert PREFECT_SERVER_ANALYTICS_ENABLED.value() is False
    assert STARTUP.value() == before


def test_a_users_own_startup_timeout_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "7")
    with prefect_defaults():
        assert STARTUP.value() == 7
