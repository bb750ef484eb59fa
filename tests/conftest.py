"""Shared fixtures. Keep each one a thin wrapper; the logic lives in helper modules."""

from __future__ import annotations

from collections.abc import Iterator

import pcsc_env
import pytest


@pytest.fixture(scope="session")
def pcsc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[pcsc_env.PcscEnv]:
    """pcscd + vpcd + a bridge thread; ``serve_blank``/``serve_personalized`` swap the card."""
    with pcsc_env.running(tmp_path_factory.mktemp("pcsc")) as env:
        yield env


@pytest.fixture(scope="session")
def pcsc_reader(pcsc: pcsc_env.PcscEnv) -> str:
    """Name of the vpcd reader; a personalized card (issued by ``pcsc.sam``) is in it at first."""
    return pcsc.reader


# --- purse: card, protocol, terminal library (logic in purse_env.py) -------------------
import purse_env  # noqa: E402


@pytest.fixture(scope="session")
def purse_issuer() -> purse_env.Issuer:
    """The test issuer: fixed master keys, personalizes virtual cards, hands out SAMs."""
    return purse_env.make_issuer()


@pytest.fixture(scope="session")
def purse_other_issuer() -> purse_env.Issuer:
    """Another issuer: its cards are not genuine to the first issuer's terminals."""
    return purse_env.make_issuer(b"someone else")


# --- personalization: keystore, issuing, registry (logic in personalization_env.py) -------
from pathlib import Path  # noqa: E402

import personalization_env  # noqa: E402


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
def personalization_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A registry database URL: SQLite in tmp_path, then PostgreSQL in a schema of its own."""
    if request.param == "sqlite":
        yield personalization_env.sqlite_url(tmp_path)
    else:
        with personalization_env.pg_schema() as url:
            yield url


# --- processing: databases, keys, synthetic terminals (logic in processing_env.py) ---------
import processing_env  # noqa: E402


@pytest.fixture(params=["sqlite", "postgresql"])
def processing_db(request: pytest.FixtureRequest, tmp_path):  # type: ignore[no-untyped-def]
    """A fresh processing world on SQLite, then on PostgreSQL (own schema; skipped without SMARTPURSE_TEST_PG)."""
    with processing_env.world(request.param, tmp_path) as w:
        yield w


@pytest.fixture(params=["sqlite", "postgresql", "sqlite-worker-walks", "postgresql-here-walks"])
def import_world(request: pytest.FixtureRequest, tmp_path):  # type: ignore[no-untyped-def]
    """``processing_db``, and again with every batch imported the way large ones are: a worker process
    verifies the MACs while the importing process stores, the chains walked by the worker (SQLite) or
    by the importing process (PostgreSQL)."""
    with processing_env.world(request.param, tmp_path) as w:
        yield w
