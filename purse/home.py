"""The home folder: configuration, keystore, card images, terminal logs, database.

One folder (``--home`` or SMARTPURSE_HOME, default ``./smartpurse-home``) holds
everything an installation has, so that a demo, a test and a shop never mix
(docs/design.md, "Layout"). ``smartpurse.toml`` in it overrides the embedded defaults (``purse.settings``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from purse.errors import UserError
from purse.settings import DEFAULTS, IssuerSettings, Settings, read_settings

DEFAULT_HOME = "smartpurse-home"
CONFIG_FILE = "smartpurse.toml"
# What a home holds from its first command on: any of these makes a folder a home.
HOME_MARKERS = (CONFIG_FILE, "keystore.json", "keys", "smartpurse.db", "terminals", "cards")


class NotAHome(UserError):
    """A command that needs a home was pointed at a folder that is none (and will not make one)."""


@dataclass
class Home:
    path: Path
    settings: Settings = DEFAULTS
    started: bool = field(default=False, compare=False)  # this process made it a home (``create``)

    @classmethod
    def open(cls, path: str | os.PathLike[str] | None = None) -> Home:
        raw = path or os.environ.get("SMARTPURSE_HOME") or DEFAULT_HOME
        home = Path(raw).expanduser()
        if home.exists() and not home.is_dir():
            raise UserError(f"home {home} exists and is not a folder")
        return cls(home, read_settings(home / CONFIG_FILE))

    def is_home(self) -> bool:
        return self.path.is_dir() and (self.started or any((self.path / m).exists() for m in HOME_MARKERS))

    def create(self) -> Path:
        """Make the folder a home: only the commands that start one (``keys init``, the demo) call this."""
        self.path.mkdir(parents=True, exist_ok=True)
        self.started = True
        return self.path

    def ensure(self) -> Path:
        """The home folder, which must be one already.

        Run in the wrong folder, a command used to make a new empty home there and report "no cards";
        now it says where it looked, so nobody issues into or reads from a home made by mistake."""
        if not self.is_home():
            state = "does not exist" if not self.path.exists() else "is not a smartpurse home"
            raise NotAHome(f"{self.path.resolve()} {state} (looked for {', '.join(HOME_MARKERS)}): give --home or "
                           "SMARTPURSE_HOME, or start a home with `smartpurse keys init`")
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

    def card_image(self, number: str) -> Path:
        """Where card ``number``'s virtual image is kept when issuing wrote it into the home."""
        return self.path / "cards" / f"{number}.card"

    @property
    def keystore_path(self) -> Path:
        return self.path / "keystore.json"

    def db_url(self, override: str | None = None) -> str:
        url = override or os.environ.get("SMARTPURSE_DB")
        if url:
            return url
        return f"sqlite:///{(self.ensure() / 'smartpurse.db').resolve()}"

    @property
    def issuer(self) -> IssuerSettings:
        return self.settings.issuer

    @property
    def system_identifier(self) -> bytes:
        return self.issuer.system_identifier.encode()[:16]


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
