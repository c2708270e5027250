"""CLI options derived from :class:`~fedlora.settings.FederationSettings`.

A command that runs federations declares a ``settings`` parameter and decorates itself
with :func:`settings_options`; the decorator gives it one option per settings field —
named ``--<field-with-dashes>``, with the field's default, help and minimum — and calls it
with the validated settings. Defaults and help are thus stated once, in the settings.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable, Collection, Mapping
from typing import Annotated, Any

import typer

from fedlora.settings import FederationSettings


def _option(field: dataclasses.Field, default: Any) -> inspect.Parameter:
    flag = "--" + field.name.replace("_", "-")
    kind = type(field.default)
    extra = {"min": field.metadata["min"]} if field.metadata.get("min") is not None else {}
    option = typer.Option(flag, help=field.metadata["help"], show_default=default != "", **extra)
    return inspect.Parameter(field.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[kind, option])


def settings_options(
    include: Collection[str] | None = None, exclude: Collection[str] = (), defaults: Mapping[str, Any] | None = None
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give the decorated command an option per settings field (``include``, or all but
    ``exclude``), with ``defaults`` overriding the fields' own for this command."""
    chosen = [f for f in dataclasses.fields(FederationSettings) if (include is None or f.name in include) and f.name not in exclude]
    overrides = dict(defaults or {})

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        own = inspect.signature(command, eval_str=True)
        own_params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for name, p in own.parameters.items() if name != "settings"]
        params = [_option(f, overrides.get(f.name, f.default)) for f in chosen]

        @functools.wraps(command)
        def with_settings(**options: Any) -> Any:
            values = {f.name: options.pop(f.name) for f in chosen}
            return command(settings=FederationSettings(**values), **options)

        del with_settings.__wrapped__  # typer must read the signature below, not the command's
        with_settings.__signature__ = own.replace(parameters=[*params, *own_params])
        with_settings.__annotations__ = {p.name: p.annotation for p in [*params, *own_params]}
        return with_settings

    return decorate
