"""The portal's test world: two holders on processing's database (SQLite, then PostgreSQL), the real SMTP
server and SMS gateway for their codes, and the portal served on 127.0.0.1 with a clock the test moves."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support.backoffice import World
from support.holders import SmtpServer
from support.portal import Clock, Portal, portal_server, settings_for, two_holders

from processing.holders.localgateway import LocalSmsGateway


@pytest.fixture
def portal(processing_db: World, servers: tuple[SmtpServer, LocalSmsGateway]) -> Iterator[Portal]:
    smtp, gateway = servers
    holders = two_holders(processing_db)
    clock = Clock(float(processing_db.now))
    with portal_server(processing_db.engine, settings_for(smtp.settings(gateway)), clock) as url:
        yield Portal(processing_db, holders, smtp, gateway, clock, url)
