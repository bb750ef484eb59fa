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

