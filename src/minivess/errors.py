"""Project error types. Each message names the file or field and the fix."""

from __future__ import annotations


class MinivessError(Exception):
    """Base class for errors a user can act on; the CLI prints them on one line."""


class ConfigError(MinivessError, ValueError):
    """A configuration file or override is invalid."""


class DataError(MinivessError, ValueError):
    """The dataset is unusable (no valid volume, unknown layout, ...)."""


class PlanError(MinivessError, ValueError):
    """No training plan satisfies the constraints (e.g. a GPU too small for the model)."""


class ContractError(MinivessError, LookupError):
    """An upstream MLflow run required by the contract is missing."""


class DeployRefused(MinivessError):
    """The registered model is not fit to serve (e.g. it does not beat the baseline)."""
