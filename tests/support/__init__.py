"""Helpers the tests share, one module per part of the system (no fixtures here: those are in conftest.py).

cards        the test issuer, hand-built APDUs, virtual cards (purse)
pcsc         pcscd + vsmartcard-vpcd started for the PC/SC tests
loyalty      programs and a shop that sells with them
issuer       the issuer station's home and registry databases (personalization)
backoffice   processing worlds: databases, keys, synthetic terminals and batches
postgres     a PostgreSQL schema per test (SMARTPURSE_TEST_PG)
cli          ``smartpurse`` run in process through ``cli.main``
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]  # the checkout: README.md, docs/, examples/, pyproject.toml
VECTORS = REPO / "tests" / "vectors"  # the published test vectors the project implements, copied in
