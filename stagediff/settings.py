"""The rules every settings class follows: a frozen dataclass whose unknown keys and wrong types are errors
(:class:`stagediff.errors.ConfigError`), never silently ignored, and which reads from a YAML/JSON mapping.

StageDiffConfig (stagediff.config), the service's request limits (serving.requests.RequestLimits) and the
pipeline's params.yaml sections (flows/params.py) are such classes: each is decorated with :func:`known_keywords`
and starts its ``__post_init__`` with :func:`check_types`.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from stagediff.errors import ConfigError


def known_keywords(kind: type) -> type:
    """Make a settings dataclass refuse unknown keyword arguments with a :class:`ConfigError` (instead of Python's
    TypeError), like every other way of building it."""
    generated = kind.__init__

    @functools.wraps(generated)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        reject_unknown(kind, kwargs)
        generated(self, *args, **kwargs)

    kind.__init__ = __init__
    return kind


def field_names(kind: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(kind))


def reject_unknown(kind: type, data: dict[str, Any], where: str = "configuration") -> None:
    """A :class:`ConfigError` naming the keys of ``data`` that are no field of ``kind``, with a guess for each typo."""
    names = field_names(kind)
    unknown = sorted(set(data) - set(names))
    if unknown:
        guesses = {key: difflib.get_close_matches(key, names, 1) for key in unknown}
        hint = "".join(f"; did you mean {close[0]!r} for {key!r}?" for key, close in guesses.items() if close)
        raise ConfigError(f"unknown {where} key(s) {unknown}{hint} Valid keys are: {', '.join(names)}")


def check_types(settings: Any, where: str = "configuration key") -> None:
    """A :class:`ConfigError` for the first field whose value does not fit its annotation (a bool is no number,
    an int is a float)."""
    hints = typing.get_type_hints(type(settings))
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if not _matches(value, hints[f.name]):
            raise ConfigError(
                f"{where} {f.name!r} must be {_describe(hints[f.name])}, got {value!r} ({type(value).__name__})"
            )


def require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def read_mapping(path: str | Path) -> dict[str, Any]:
    """The top-level mapping of a YAML/JSON file (empty file: {})."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"configuration file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"configuration file {path} is not valid YAML/JSON: {error}") from error
    if not isinstance(data, dict):
        raise ConfigError(f"configuration file {path} must hold a mapping of keys to values, got {type(data).__name__}")
    return data


def _matches(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin is tuple:
        (item,) = typing.get_args(hint)[:1]
        return isinstance(value, tuple) and all(_matches(v, item) for v in value)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, hint)


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(arg) for arg in typing.get_args(hint))
    if origin is tuple:
        return f"a list of {_describe(typing.get_args(hint)[0])}"
    return "None" if hint is type(None) else f"a {hint.__name__}"
