"""One strict boundary where YAML becomes typed objects.

Every config model derives from :class:`StrictModel` (unknown keys are rejected), and every
file goes through :func:`load_yaml_model`, which turns pydantic's errors into one-line messages
naming the file, the field path and a "did you mean ...?" hint.
"""

from __future__ import annotations

import difflib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator

from minivess.errors import ConfigError
from minivess.resources import CONFIG_DIR_ENV as CONFIG_DIR_ENV  # re-exported
from minivess.resources import config_dir as config_dir  # re-exported

M = TypeVar("M", bound=BaseModel)


#: Where a config field's value is a yes/no but the field takes a number.
YES_NO_FOR_A_NUMBER = (
    "a yes/no value where a number goes (YAML reads yes/no/on/off/true/false as booleans)"
)


def _leaves(annotation: Any) -> list[Any]:
    """The plain types a field's annotation allows (through ``Annotated``, unions, ``None``)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _leaves(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [t for a in typing.get_args(annotation) for t in _leaves(a)]
    return [annotation]


def _takes_a_number_not_a_yes_no(types_: list[Any]) -> bool:
    return any(t in (int, float) for t in types_) and not any(
        t in (bool, Any, object) for t in types_
    )


def _item_leaves(annotation: Any) -> list[Any]:
    """The plain element types of the list, tuple or set types ``annotation`` allows."""
    return [
        leaf
        for t in _leaves(annotation)
        if typing.get_origin(t) in (list, tuple, set, frozenset)
        for a in typing.get_args(t)
        if a is not Ellipsis
        for leaf in _leaves(a)
    ]


class StrictModel(BaseModel):
    """Base for config objects: frozen; unknown keys are an error, and so are a yes/no where a
    number goes (pydantic's lax mode would read ``epochs: yes`` as 1) and an infinite or NaN
    number (``lr: .inf`` passes ``gt=0``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_yes_no_for_a_number(cls, value: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields.get(info.field_name or "")
        if field is None:
            return value
        if isinstance(value, bool) and _takes_a_number_not_a_yes_no(_leaves(field.annotation)):
            raise ValueError(YES_NO_FOR_A_NUMBER)
        if isinstance(value, list | tuple):
            flags = [i for i, v in enumerate(value) if isinstance(v, bool)]
            if flags and _takes_a_number_not_a_yes_no(_item_leaves(field.annotation)):
                raise ValueError(f"item {flags[0]} is {YES_NO_FOR_A_NUMBER}")
        return value


def _field_names(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Names of the fields allowed at ``loc`` (best effort, for hints)."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int) or not (
            isinstance(current, type) and issubclass(current, BaseModel)
        ):
            continue
        field = current.model_fields.get(part)
        if field is None:
            return []
        annotation = field.annotation
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        current = next(
            (c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None
        )
        if current is None:
            return []
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def format_validation_error(
    err: ValidationError, model: type[BaseModel], origin: str
) -> ConfigError:
    """Turn a pydantic error into a one-line-per-problem :class:`ConfigError`."""
    lines = []
    for item in err.errors():
        loc = tuple(item.get("loc", ()))
        path = ".".join(str(p) for p in loc) or "<root>"
        if item.get("type") == "extra_forbidden":
            allowed = _field_names(model, loc)
            close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            allowed_txt = f" Allowed: {', '.join(sorted(allowed))}." if allowed else ""
            lines.append(f"{origin}: unknown field '{path}'.{hint}{allowed_txt}")
        else:
            msg = str(item.get("msg", "")).removeprefix("Value error, ")  # our validators' own
            lines.append(f"{origin}: field '{path}': {msg}")
    return ConfigError("\n".join(lines))


def parse_model(model: type[M], data: Any, origin: str) -> M:
    """Validate ``data`` against ``model``; raise :class:`ConfigError` naming ``origin``."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise format_validation_error(err, model, origin) from None


def read_yaml(path: Path) -> Any:
    """Read a YAML file, with a clear error when it is missing or malformed."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: file not found.")
    try:
        return yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err}).") from None


def load_yaml_model(model: type[M], path: Path) -> M:
    """Load ``path`` as YAML and validate it against ``model``."""
    return parse_model(model, read_yaml(path), str(path))


def parse_set_overrides(items: list[str] | None) -> dict[str, Any]:
    """Parse ``--set key=value`` items into a nested dict; values are YAML scalars/lists.

    Examples:
        >>> parse_set_overrides(["patch_size=[64,64,4]", "training.epochs=3"])
        {'patch_size': [64, 64, 4], 'training': {'epochs': 3}}
    """
    import yaml

    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set '{item}': expected key=value, e.g. --set batch_size=2.")
        value = yaml.safe_load(raw) if raw.strip() else None
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Recursively merge ``extra`` into a copy of ``base`` (``extra`` wins)."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out
