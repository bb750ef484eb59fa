"""What every command group shares: the context object and the result printer.

Commands return plain data; ``emit`` prints it as JSON under ``--json`` or as text
otherwise, so scripts and people read the same result (STYLE.md, trezorlib habit).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import click

from purse.home import Home


@dataclass
class CliContext:
    home: Home
    db_override: str | None
    json: bool

    @property
    def db_url(self) -> str:
        return self.home.db_url(self.db_override)


pass_cli = click.make_pass_decorator(CliContext)


def _default(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "_asdict"):
        return value._asdict()
    return str(value)


def emit(ctx: CliContext, data: Any, text: Callable[[Any], str] | str | None = None) -> None:
    """Print a command's result: JSON for scripts, ``text(data)`` for people."""
    if ctx.json:
        click.echo(json.dumps(data, default=_default, indent=2, ensure_ascii=False))
    elif callable(text):
        click.echo(text(data))
    elif text is not None:
        click.echo(text)
    else:
        click.echo(json.dumps(data, default=_default, indent=2, ensure_ascii=False))
