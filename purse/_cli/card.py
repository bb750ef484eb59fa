"""``smartpurse apdu`` and ``smartpurse cards serve``: raw APDUs, and virtual cards served to pcscd.

Each command parses, calls the library and prints through ``emit``; transports and
sessions live in the library, never here.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import click

from purse._cli.util import CliContext, emit, pass_cli
from purse.apdu import SW, ApduError, PurseError, ResponseApdu, raise_for_status
from purse.errors import UserError
from purse.transport import Transport
from purse.transport.vpcd import DEFAULT_HOST, DEFAULT_PORT, serve


@click.command("serve")
@click.argument("image", type=click.Path(path_type=Path))
@click.option("--port", default=DEFAULT_PORT, show_default=True, help="vpcd slot port (35964 is the second slot).")
@click.option("--host", default=DEFAULT_HOST, show_default=True, help="Host where pcscd runs the vpcd driver.")
@pass_cli
def serve_card(cli: CliContext, image: Path, port: int, host: str) -> None:
    """Put a virtual card IMAGE in pcscd's vpcd reader until interrupted (Ctrl-C)."""

    def ready(reader: str) -> None:
        emit(cli, {"image": str(image), "host": host, "port": port, "reader": reader},
             f"serving {image} to vpcd at {host}:{port} as reader {reader!r} (Ctrl-C to stop)")

    def reach(reached: bool) -> None:  # on stderr: stdout holds the one result above (JSON under --json)
        click.echo(f"pcscd's vpcd driver answered at {host}:{port}: the card is in the reader" if reached else
                   f"pcscd's vpcd driver is not listening at {host}:{port}: start pcscd with vsmartcard-vpcd "
                   "installed (`pcscd -f` shows it); still trying", err=True)

    serve(image, host, port, on_ready=ready, on_reach=reach)


def parse_apdu(text: str) -> bytes:
    """Hex with optional spaces or colons, e.g. ``"00 A4 04 00 07 ..."``."""
    digits = re.sub(r"[\s:]", "", text)
    try:
        raw = bytes.fromhex(digits)
    except ValueError:
        raise UserError(f"not hex: {text!r}") from None
    if len(raw) < 4:
        raise UserError(f"an APDU has at least 4 bytes (CLA INS P1 P2): {text!r}")
    return raw


def _desfire_meaning(sw: int) -> str | None:
    """A DESFire card's ``91xx`` (status bytes that are not the reference purse's own 91xx)."""
    from purse.desfire.status import DesfireStatus, raise_for_desfire_status

    if sw >> 8 != 0x91 or sw in set(SW) or (sw & 0xFF) not in set(DesfireStatus):
        return None
    if sw == 0x9100:
        return "DESFire: success"
    if sw == 0x91AF:
        return "DESFire: more frames follow (90 AF 00 00 00 fetches the next)"
    try:
        raise_for_desfire_status(sw & 0xFF)
    except ApduError as e:
        return f"DESFire: {e}"
    return None


def sw_meaning(sw: int) -> str:
    """What a status word means, in the words the library uses for its errors."""
    desfire = _desfire_meaning(sw)
    if desfire is not None:
        return desfire
    try:
        raise_for_status(sw)
    except PurseError as e:
        return str(e)
    except ApduError:
        if sw in set(SW):
            return f"{SW(sw).name.lower().replace('_', ' ')} (SW {sw:04X})"
        return f"status word {sw:04X}, unknown to smartpurse"
    return "success"


def _open_transport(reader: str | None, image: Path | None) -> Transport:
    if reader is not None and image is not None:
        raise UserError("give either --reader or --image, not both")
    if image is not None:
        from purse.transport.chips import virtual_transport

        return virtual_transport(image)
    from purse.transport.pcsc import PcscTransport

    return PcscTransport(reader)


@click.command("readers")
@pass_cli
def readers(cli: CliContext) -> None:
    """List the PC/SC readers pcscd knows, and whether each holds a card."""
    from purse.transport.pcsc import reader_states

    states = reader_states()
    emit(cli, [{"reader": name, "card": present} for name, present in states],
         lambda rows: "\n".join(f"{r['reader']}: {'card present' if r['card'] else 'no card'}" for r in rows)
         or "no PC/SC reader is connected")


class CardAnswered(ApduError):
    """``smartpurse apdu``: the last answer was not success; every exchange was still printed."""


@click.command("apdu")
@click.argument("apdus", nargs=-1, required=True, metavar="HEX...")
@click.option("-r", "--reader", help="PC/SC reader name or a unique part of it [first reader with a card].")
@click.option("--image", type=click.Path(path_type=Path), help="Send to this virtual card image instead.")
@pass_cli
def apdu(cli: CliContext, apdus: tuple[str, ...], reader: str | None, image: Path | None) -> None:
    """Debugging: send raw APDUs (one hex argument each) and print every answer."""
    commands = [parse_apdu(a) for a in apdus]
    transport = _open_transport(reader, image)
    transport.connect()
    results: list[dict[str, Any]] = []
    try:
        for command in commands:
            response = ResponseApdu.parse(transport.transmit(command))
            results.append({"command": command.hex(), "data": response.data.hex(), "sw": f"{response.sw:04X}",
                            "meaning": sw_meaning(response.sw)})
    finally:
        transport.disconnect()
    emit(cli, results, lambda rs: "\n".join(_exchange_text(r) for r in rs))
    last = int(results[-1]["sw"], 16)
    # a script must see a refusal in the exit status, not only in text (DESFire's 9100 and 91AF are not refusals)
    if last not in (0x9000, 0x9100, 0x91AF) and last >> 8 != 0x61:
        raise CardAnswered(last, message=f"the card answered {last:04X}: {results[-1]['meaning']}")


def _exchange_text(r: dict[str, Any]) -> str:
    answer = " ".join(part for part in (r["data"], r["sw"]) if part)
    return f"> {r['command']}\n< {answer} ({r['meaning']})"
