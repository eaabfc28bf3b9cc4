"""Fixtures of the tracking tests."""

from tests.fixtures.tiny import plan_factory, tiny_data  # noqa: F401  (fixtures)
