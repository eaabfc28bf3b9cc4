"""Fixtures of the fault-injection tests: the tiny dataset, the moto server, a plan."""

from tests.fixtures.tiny import plan_factory, tiny_data  # noqa: F401  (fixtures)
