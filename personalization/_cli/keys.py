"""``smartpurse keys …``: the key ceremony, role key files, rotation, fingerprints."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from personalization._cli.common import engine, issuer_keystore
from personalization.keyfiles import export_role_file, load_issuer
from personalization.keystore import init_keystore, rotate_keystore
from purse._cli.util import CliContext, emit, pass_cli, passphrase, table
from purse.errors import UserError
from purse.rolekeys import EXPORTED_ROLES


@click.group("keys")
def keys() -> None:
    """The issuer's keystore: key ceremony, role key files, rotation."""


@keys.command("init")
@pass_cli
def keys_init(cli: CliContext) -> None:
    """Create the master keys and the issuer signing key in an encrypted keystore."""
    store = init_keystore(cli.home, passphrase("New keystore passphrase", confirm=True))
    summary = store.summary() | {"keystore": str(cli.home.keystore_path)}
    emit(cli, summary, lambda s: f"keystore created at {s['keystore']} (mode 0600), key version "
                                 f"{s['current_version']}; issuer public key {s['issuer_public_key']}")


@keys.command("show")
@pass_cli
def keys_show(cli: CliContext) -> None:
    """Key versions and fingerprints (never a key)."""
    summary = issuer_keystore(cli).summary()

    def text(s: dict[str, Any]) -> str:
        rows = [(name, version, fp) for name, versions in s["masters"].items() for version, fp in versions.items()]
        return (table(("master", "version", "fingerprint"), rows,
                      title=f"issuer {s['issuer_id']} keystore, current version {s['current_version']}")
                + f"\nissuer public key (Ed25519): {s['issuer_public_key']}")

    emit(cli, summary, text)


@keys.command("rotate")
@pass_cli
def keys_rotate(cli: CliContext) -> None:
    """A new version of every master key; cards issued from now on use it."""
    cli.home.ensure()  # a wrong folder is said before a passphrase is asked for
    store = rotate_keystore(cli.home, passphrase())
    emit(cli, {"current_version": store.current_version},
         f"key version {store.current_version} is now current; re-export the role key files "
         f"(keys export) so terminals and processing accept the new cards and keep the old")


@keys.command("export")
@click.option("--role", type=click.Choice([str(r) for r in EXPORTED_ROLES]), required=True,
              help="Whose keys: a POS terminal, the credit desk, or processing.")
@click.option("--terminal", type=int, help="Terminal id (required for pos; optional for credit: its log key).")
@click.option("--merchant", type=int, default=1, show_default=True, help="Merchant the POS terminal belongs to.")
@click.option("--name", help="A name for the terminal in the registry.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Key file [home/keys/<role>.key].")
@click.option("--passphrase-env", metavar="VAR",
              help="Seal the file with the passphrase in env VAR instead of the keystore's.")
@pass_cli
def keys_export(cli: CliContext, role: str, terminal: int | None, merchant: int, name: str | None,
                out: Path | None, passphrase_env: str | None) -> None:
    """Write a separately encrypted key file holding only what ROLE may hold."""
    cli.home.ensure()  # a wrong folder is said before a passphrase is asked for
    keystore_passphrase = passphrase()
    file_passphrase = keystore_passphrase
    if passphrase_env is not None:
        file_passphrase = os.environ.get(passphrase_env, "")
        if not file_passphrase:
            raise UserError(f"--passphrase-env {passphrase_env}: that variable is not set or empty")
    store = load_issuer(cli.home, keystore_passphrase)
    path, role_keys = export_role_file(engine(cli), cli.home, store, role, file_passphrase, terminal_id=terminal,
                                       merchant_id=merchant, name=name, path=out)
    held = [f"{ref.name} v{','.join(map(str, role_keys.versions(ref)))}" for ref in role_keys.masters]
    if role_keys.term_masters:
        held.append(f"TERM v{','.join(map(str, sorted(role_keys.term_masters)))}")
    if role_keys.log_key is not None:
        held.append(f"log key of terminal {terminal} (v{role_keys.log_key_version})")
    result = {"role": role, "path": str(path), "terminal_id": terminal,
              "merchant_id": role_keys.merchant_id, "holds": held}
    emit(cli, result, lambda r: f"{r['role']} key file written to {r['path']} (mode 0600): holds "
                                f"{'; '.join(r['holds'])}")
