"""The home folder: configuration, keystore, card images, terminal logs, database.

One folder (``--home`` or SMARTPURSE_HOME, default ``./smartpurse-home``) holds
everything an installation has, so that a demo, a test and a shop never mix
(DESIGN.md, "Layout"). ``smartpurse.toml`` in it overrides the embedded defaults.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from purse.errors import UserError

DEFAULT_HOME = "smartpurse-home"
CONFIG_FILE = "smartpurse.toml"

# The embedded defaults: a fresh home works without any configuration file.
DEFAULTS: dict[str, Any] = {
    "issuer": {
        "iin": "627700",  # issuer identification number, first digits of every card number
        "issuer_id": 1,
        "system_identifier": "SMARTPURSE",
        "currency": 643,  # ISO 4217 numeric (643 = RUB); amounts are in its minor unit
        "currency_exponent": 2,
        "max_balance": 1_500_000,  # minor units: 15,000.00
        "card_validity_years": 5,
    },
}


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


@dataclass
class Home:
    path: Path
    config: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def open(cls, path: str | os.PathLike[str] | None = None) -> Home:
        raw = path or os.environ.get("SMARTPURSE_HOME") or DEFAULT_HOME
        home = Path(raw).expanduser()
        if home.exists() and not home.is_dir():
            raise UserError(f"home {home} exists and is not a folder")
        config = DEFAULTS
        cfg_file = home / CONFIG_FILE
        if cfg_file.is_file():
            try:
                config = _merge(DEFAULTS, tomllib.loads(cfg_file.read_text(encoding="utf-8")))
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
                raise UserError(f"{cfg_file}: not valid TOML: {e}") from None
        return cls(home, config)

    def ensure(self) -> Path:
        self.path.mkdir(parents=True, exist_ok=True)
        return self.path

    def sub(self, name: str) -> Path:
        """A subfolder of the home, created on first use."""
        p = self.ensure() / name
        p.mkdir(exist_ok=True)
        return p

    @property
    def cards_dir(self) -> Path:
        return self.sub("cards")

    @property
    def terminals_dir(self) -> Path:
        return self.sub("terminals")

    @property
    def keystore_path(self) -> Path:
        return self.path / "keystore.json"

    def db_url(self, override: str | None = None) -> str:
        url = override or os.environ.get("SMARTPURSE_DB")
        if url:
            return url
        return f"sqlite:///{(self.ensure() / 'smartpurse.db').resolve()}"

    @property
    def issuer(self) -> dict[str, Any]:
        return dict(self.config["issuer"])

    @property
    def system_identifier(self) -> bytes:
        return str(self.issuer["system_identifier"]).encode()[:16]


@dataclass(frozen=True)
class TerminalFiles:
    """Where terminal ``terminal_id`` keeps its log, installed program and hotlist in a home."""

    folder: Path
    terminal_id: int

    @property
    def log(self) -> Path:
        return self.folder / f"{self.terminal_id}.db"

    @property
    def program(self) -> Path:
        return self.folder / f"{self.terminal_id}.program.signed"

    @property
    def hotlist(self) -> Path:
        return self.folder / f"{self.terminal_id}.hotlist.signed"
