"""End-to-end fixtures (defined in tests/fixtures, which test modules can import)."""

from tests.fixtures.main_job import main_job  # noqa: F401  (fixture)
