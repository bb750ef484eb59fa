"""``smartpurse program example|sign|show``: the issuer signs loyalty programs; anyone checks one.

Signing needs the issuer's keystore, so the group belongs to the issuer station's
command line; a terminal verifies with the issuer public key in its own key file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from personalization._cli.common import issuer_keystore
from purse._cli.pos import open_station
from purse._cli.util import CliContext, emit, pass_cli
from purse.errors import UserError
from purse.files import read_file, write_atomic
from purse.loyalty import example_program_bytes, parse_program_bytes, read_program_file, sign_program
from purse.loyalty.signed import KIND as PROGRAM_KIND
from purse.signing import verify_document
from purse.station import is_signed_document


@click.group("program")
def program_group() -> None:
    """Loyalty programs: sign a program file, show a program's rules."""


@program_group.command("sign")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), help="Signed file to write [FILE with .signed].")
@pass_cli
def program_sign(cli: CliContext, file: Path, out: Path | None) -> None:
    """Check a program FILE (TOML or JSON) and sign it with the issuer key."""
    data, program = read_program_file(file)
    signed = sign_program(data, issuer_keystore(cli).signing_key, str(file))
    out = write_atomic(out or file.with_suffix(".signed"), signed)
    emit(cli, {"program_id": program.program_id, "name": program.name, "version": program.version, "out": str(out)},
         f"signed program {program.program_id} {program.name!r} v{program.version} -> {out}")


@program_group.command("example")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("demo-program.toml"),
              show_default=True, help="Where to write it (an existing file is not overwritten).")
@pass_cli
def program_example(cli: CliContext, out: Path) -> None:
    """Write the annotated example program (TOML) to start a program of your own from."""
    if out.exists():
        raise UserError(f"{out} exists: give another --out")
    write_atomic(out, example_program_bytes(), overwrite=False)
    emit(cli, {"out": str(out)}, f"example program written to {out}: edit it, then `smartpurse program sign {out}`")


@program_group.command("show")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--terminal", "terminal_id", type=int,
              help="Verify with the issuer key in this POS terminal's key file [the issuer keystore].")
@pass_cli
def program_show(cli: CliContext, file: Path, terminal_id: int | None) -> None:
    """Verify a signed program FILE and print its rules (an unsigned file: just check it)."""
    data = read_file(file)
    signed = is_signed_document(data)
    if signed:
        if terminal_id is not None:
            key = open_station(cli, terminal_id).keys.issuer_public_key
        else:
            key = issuer_keystore(cli).public_key_bytes
        data = verify_document(data, PROGRAM_KIND, key, source=str(file))
    program = parse_program_bytes(data, str(file))
    result = {"file": str(file), "signed": signed, **program.describe()}
    emit(cli, result, _program_text)


def _program_text(d: dict[str, Any]) -> str:
    status = "signed by the issuer (verified)" if d["signed"] else "NOT signed (terminals will refuse it)"
    lines = [f"program {d['program_id']} {d['name']!r} version {d['version']}: {status}"]
    earn = d["earn"]
    if "per_amount" in earn:
        lines.append(f"  earn {earn['per_amount']['points']} per {earn['per_amount']['amount']} debited")
    if "per_visit" in earn:
        lines.append(f"  earn {earn['per_visit']} per visit")
    if "big_purchase" in earn:
        lines.append(f"  earn {earn['big_purchase']['points']} for a purchase of {earn['big_purchase']['threshold']}"
                     " or more")
    if "frequency" in earn:
        f = earn["frequency"]
        lines.append(f"  earn {f['points']} on the {f['visits']}th visit within {f['days']} days")
    for ms in earn.get("milestones", []):
        lines.append(f"  earn {ms['points']} when cumulative spend reaches {ms['spend']}")
    if "prize" in d:
        p = d["prize"]
        lines.append(f"  prize at {p['threshold']} points: {p['text']!r}, then points {p['mode']}")
    for t in d["tiers"]:
        lines.append(f"  tier {t['name']}: from {t['min_spend']} spent, {t['discount_percent']}% off")
    if "expiry" in d:
        lines.append(f"  points lapse after {d['expiry']['days']} days without a visit")
    if "redeem" in d:
        lines.append(f"  redeem: 1 point pays {d['redeem']['point_value']}, at least {d['redeem']['min_points']}"
                     " points, PIN required")
    return "\n".join(lines)
