"""Fixtures of the training integration tests: a tiny MiniVess-like dataset (with a Z=5 volume)."""

from tests.fixtures.tiny import plan_factory, tiny_data  # noqa: F401  (fixtures)
