"""Fixtures every folder shares, and the markers of a fast loop.

``tests/`` mirrors the layers: ``purse/`` (card side), ``personalization/`` (issuer station),
``processing/`` (back office), ``app/`` (the command line end to end, the architecture);
each folder's conftest.py holds its own fixtures, ``support/`` the helpers behind them.

Markers (pyproject.toml): ``postgres`` is set here on every test that runs on PostgreSQL
(a ``postgresql`` parameter or an explicit mark), ``pcsc`` on every test using pcscd, and
``slow`` by hand on tests of more than a few seconds. A developer's fast loop is
``pytest -m "not slow and not postgres and not pcsc"``; CI runs everything.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support import backoffice as processing_env
from support import cards as purse_env
from support import issuer as personalization_env
from support import pcsc as pcsc_env
from support.holders import SMTP_PASSWORD, SmtpServer, channels

from processing.holders.localgateway import LocalSmsGateway


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if any(isinstance(v, str) and v.startswith("postgresql") for v in params.values()):
            item.add_marker(pytest.mark.postgres)
        if "pcsc" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.pcsc)


@pytest.fixture(scope="session")
def pcsc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[pcsc_env.PcscEnv]:
    """pcscd + vpcd + a bridge thread; ``serve_blank``/``serve_personalized`` swap the card."""
    with pcsc_env.running(tmp_path_factory.mktemp("pcsc")) as env:
        yield env


@pytest.fixture(scope="session")
def pcsc_reader(pcsc: pcsc_env.PcscEnv) -> str:
    """Name of the vpcd reader; a personalized card (issued by ``pcsc.sam``) is in it at first."""
    return pcsc.reader


@pytest.fixture(scope="session")
def purse_issuer() -> purse_env.Issuer:
    """The test issuer: fixed master keys, personalizes virtual cards, hands out SAMs."""
    return purse_env.make_issuer()


@pytest.fixture
def personalization_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh home with an initialized keystore; SMARTPURSE_HOME/PASSPHRASE point at it."""
    from personalization.keystore import init_keystore
    from purse.home import Home

    home = tmp_path / "home"
    monkeypatch.setenv("SMARTPURSE_HOME", str(home))
    monkeypatch.setenv("SMARTPURSE_PASSPHRASE", personalization_env.PASSPHRASE)
    monkeypatch.delenv("SMARTPURSE_DB", raising=False)
    init_keystore(Home.open(home), personalization_env.PASSPHRASE)
    return home


@pytest.fixture(params=["sqlite", "postgresql"])
def processing_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[processing_env.World]:
    """A fresh processing world on SQLite, then on PostgreSQL (own schema; skipped without SMARTPURSE_TEST_PG)."""
    with processing_env.world(request.param, tmp_path) as w:
        yield w


@pytest.fixture
def servers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[SmtpServer, LocalSmsGateway]]:
    """A real SMTP server (STARTTLS, AUTH) and the local SMS gateway, on 127.0.0.1, for one test: where the
    holder channels (tests/holders) and the portal's login codes (tests/portal) are delivered."""
    with channels(tmp_path) as both:
        monkeypatch.setenv("SMARTPURSE_SMTP_PASSWORD", SMTP_PASSWORD)
        monkeypatch.setenv("SMARTPURSE_SMS_KEY", both[1].api_id)
        yield both
