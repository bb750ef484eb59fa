"""Fixtures of the card-side tests: a second issuer whose cards are not the first one's."""

from __future__ import annotations

import pytest
from support import cards as purse_env


@pytest.fixture(scope="session")
def purse_other_issuer() -> purse_env.Issuer:
    """Another issuer: its cards are not genuine to the first issuer's terminals."""
    return purse_env.make_issuer(b"someone else")
