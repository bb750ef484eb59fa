"""Fixtures of the holder-channel tests: the SMTP server and the SMS gateway, with their secrets set."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support.holders import SMTP_PASSWORD, SmtpServer, channels

from processing.holders.localgateway import LocalSmsGateway


@pytest.fixture
def servers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[SmtpServer, LocalSmsGateway]]:
    """A real SMTP server (STARTTLS, AUTH) and the local SMS gateway, on 127.0.0.1, for one test."""
    with channels(tmp_path) as both:
        monkeypatch.setenv("SMARTPURSE_SMTP_PASSWORD", SMTP_PASSWORD)
        monkeypatch.setenv("SMARTPURSE_SMS_KEY", both[1].api_id)
        yield both
