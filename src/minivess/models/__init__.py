"""Networks built from a plan. The builder and the planner read the same model profile.

``build_model(plan)`` calls the plan's network builder (``dynunet``, ``segresnet``,
``swinunetr``) or ``entry_point`` (``module:callable``) with the plan, the channel counts and the
plan's ``network.params``, which the planner copied from ``configs/model_profiles/<model>.yaml``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from minivess.errors import ConfigError

if TYPE_CHECKING:
    from torch import nn

    from minivess.planning.plan import TrainingPlan
    from minivess.planning.profiles import ModelProfile

__all__ = ["build_model", "load_entry_point"]


def load_entry_point(spec: str):
    """Import ``"package.module:callable"``.

    Raises:
        ConfigError: the module or attribute does not exist.
    """
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError(
            f"entry_point '{spec}': cannot import '{module_name}' ({err}); make the module "
            "importable (install it or put it on PYTHONPATH)"
        ) from None
    fn = getattr(module, attr, None)
    if fn is None or not callable(fn):
        raise ConfigError(f"entry_point '{spec}': '{module_name}' has no callable '{attr}'")
    return fn


def build_model(
    plan: TrainingPlan,
    in_channels: int = 1,
    out_channels: int = 2,
    profile: ModelProfile | None = None,
) -> nn.Module:
    """The network of ``plan``: input (B, in_channels, x, y, z), output (B, out_channels, x, y, z).

    The network block comes from the plan itself (``plan.network``: builder and params such as
    filters), so a plan or checkpoint rebuilds the network it was made for whatever the current
    profile says. Only a plan without one (hand-built in tests) reads the profile's.

    Args:
        plan: the training plan (``model``, ``network``, ``strides``, ``kernel_sizes``, ...).
        in_channels: image channels (1 for MiniVess).
        out_channels: classes (2: background, vessel).
        profile: the model profile for a plan without ``network`` (default: by ``plan.model``).
    """
    from minivess.models.builders import BUILDERS

    if plan.network is not None and profile is None:
        spec: Any = plan.network
        name = plan.model
    else:
        from minivess.planning.profiles import load_model_profile

        profile = profile or load_model_profile(plan.model)
        spec, name = profile.network, profile.name
    fn = load_entry_point(spec.entry_point) if spec.entry_point else BUILDERS[spec.builder or ""]
    net = fn(plan, in_channels=in_channels, out_channels=out_channels, **spec.params)
    from torch import nn as _nn

    if not isinstance(net, _nn.Module):
        raise ConfigError(
            f"model profile '{name}': the builder returned {type(net).__name__}, "
            "not a torch.nn.Module"
        )
    return net
