"""``smartpurse hotlist export``: processing's list of blocked and cloned cards, signed by the issuer.

The list comes from the back office and the signature from the issuer's keystore, so
the command is composed here, at the top of the application layer.
"""

from __future__ import annotations

from pathlib import Path

import click

from personalization._cli.common import engine, issuer_keystore
from processing.hotlist_export import export_hotlist
from purse._cli.util import CliContext, emit, pass_cli


@click.group("hotlist")
def hotlist() -> None:
    """The signed list of blocked cards terminals enforce."""


@hotlist.command("export")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The signed hotlist file to write (install it with `smartpurse pos hotlist`).")
@pass_cli
def hotlist_export(cli: CliContext, out: Path) -> None:
    """Export blocked and cloned cards, signed by the issuer (Ed25519)."""
    store = issuer_keystore(cli)
    with engine(cli).begin() as conn:
        hl = export_hotlist(conn, store.signing_key, store.issuer_id, out)
    emit(cli, {"out": str(out), "sequence": hl.sequence, "cards": len(hl.cards)},
         lambda d: f"hotlist {d['sequence']}: {d['cards']} cards, signed, written to {d['out']}")
