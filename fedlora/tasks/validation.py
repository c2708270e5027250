"""Checking what users hand to a task: its options and client indices.

Each built-in task declares its options as a frozen dataclass whose fields carry defaults
and whose ``__post_init__`` rejects bad values with :func:`check`. :func:`parse_options`
is the one boundary where loose user input (keyword arguments from Python, strings from
the command line) becomes such a dataclass, so the code behind it can trust its options.
"""

from __future__ import annotations

import dataclasses
import numbers
import os
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from fedlora.errors import FedloraError

OptionsT = TypeVar("OptionsT")


def check(ok: bool, message: str) -> None:
    """Raise ``FedloraError(message)`` unless ``ok``; the message names the value and the fix."""
    if not ok:
        raise FedloraError(message)


def parse_options(cls: type[OptionsT], options: Mapping[str, Any], *, task: str) -> OptionsT:
    """Build the options dataclass ``cls`` of ``task`` from user-given ``options``.

    Unknown names are rejected with the list of valid options and their defaults. Values
    are coerced to the declared field types, so ``"32"`` works for an ``int`` option and
    ``"128,64"`` for a ``tuple[int, ...]``; anything that does not convert is rejected.
    """
    fields = {field.name: field for field in dataclasses.fields(cls)}
    unknown = sorted(set(options) - set(fields))
    check(
        not unknown,
        f"task {task!r} has no option {', '.join(map(repr, unknown))}; "
        f"its options are: {describe_options(cls)}",
    )
    hints = typing.get_type_hints(cls)
    values = {name: _coerce(value, hints[name], name=name, task=task) for name, value in options.items()}
    return cls(**values)


def describe_options(cls: type) -> str:
    """``name=default, ...`` for every field of the options dataclass ``cls``, as typed on a command line."""

    def shown(value: Any) -> str:
        return ",".join(map(str, value)) if isinstance(value, tuple) else repr(value)

    return ", ".join(f"{field.name}={shown(field.default)}" for field in dataclasses.fields(cls))


def as_config(options: Any) -> dict[str, Any]:
    """The fields of an options dataclass as a JSON-ready dict (tuples become lists)."""
    return {
        name: list(value) if isinstance(value, tuple) else value
        for name, value in dataclasses.asdict(options).items()
    }


def check_client_index(index: int, num_clients: int, *, task: str) -> None:
    """Reject a client index outside ``0 .. num_clients-1`` (it may come from node config)."""
    check(
        isinstance(index, numbers.Integral) and not isinstance(index, bool) and 0 <= index < num_clients,
        f"client index {index!r} is out of range: task {task!r} has {num_clients} clients, "
        f"numbered 0 to {num_clients - 1}",
    )


def _coerce(value: Any, hint: Any, *, name: str, task: str) -> Any:
    """``value`` converted to the type ``hint`` (int, float, bool, str, tuple[int, ...], X | None)."""
    problem = f"option {name}={value!r} of task {task!r}"
    optional = _optional_of(hint)
    if optional is not None:
        if value is None or (isinstance(value, str) and value.lower() in ("", "none")):
            return None
        hint = optional
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise FedloraError(f"{problem} must be true or false")
    if hint is int:
        # bool is an int subclass, but `context=True` is a mistake, not the number 1
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise FedloraError(f"{problem} must be a whole number")
    if hint is float:
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise FedloraError(f"{problem} must be a number")
    if hint is str:
        if isinstance(value, (str, os.PathLike)):
            return os.fspath(value)
        raise FedloraError(f"{problem} must be a string")
    if typing.get_origin(hint) is tuple:
        items = value.split(",") if isinstance(value, str) else value
        if isinstance(items, (list, tuple)):
            (item_hint, _ellipsis) = typing.get_args(hint)
            return tuple(_coerce(item, item_hint, name=name, task=task) for item in items)
        raise FedloraError(f"{problem} must be a list of numbers, e.g. {name}=128,64")
    raise TypeError(f"options field {name} has a type parse_options does not handle: {hint!r}")


def _optional_of(hint: Any) -> Any | None:
    """``X`` if ``hint`` is ``X | None``, else ``None``."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if len(args) == 1 and len(typing.get_args(hint)) == 2:
            return args[0]
    return None
