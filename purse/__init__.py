"""smartpurse: smart-card electronic purses and loyalty points.

``purse`` is the card side: the card application, its protocol, transports, the SAM
and the terminal library that terminal vendors embed. It needs cryptography, construct,
python-stdnum and click, and none of the back office.

What a POS integration uses (each module's ``__all__`` is its public API):

| Module | For |
|---|---|
| `purse.terminal` | `Terminal` (sell, cancel, read, block), `CreditTerminal`, `Receipt` |
| `purse.terminal_log` | `TerminalLog`: the write-ahead, MAC-chained log; `LogKeys` |
| `purse.batch` | `export_batch`, the batch file format |
| `purse.rolekeys` | `load_role_keys`: the POS key file, its SAM and log keys |
| `purse.loyalty` | `load_signed_program`, `ProgramPolicy` |
| `purse.transport.virtual`, `purse.transport.pcsc` | the card: an image file, or a PC/SC reader |
| `purse.transport.chips`, `purse.transport.virtual_desfire` | a card image of either kind; the emulated DESFire card |
| `purse.profiles`, `purse.cardsession` | which card profile is presented (reference or DESFire); their verbs |
| `purse.desfire` | MIFARE DESFire EV2/EV3: profile, session, commands, EV2 secure messaging, Transaction MAC |
| `purse.money` | `parse_amount` / `format_amount`: integer minor units, never float |
| `purse.apdu`, `purse.errors` | the exceptions below |

The exceptions a POS must catch, all ``purse.errors.SmartpurseError`` with a message meant for
the cashier and an ``exit_code`` (docs/cli.md):

- `purse.terminal.TransactionInterrupted`: the card left before answering. Present it again and
  run the same command.
- `purse.terminal.CompletedBefore`: that command had completed before the card was pulled. Hand
  over `.receipt`; nothing was sent again.
- `purse.apdu.InsufficientFunds`, `InsufficientPoints`: not enough on the card.
- `purse.apdu.CardBlocked`, `CardExpired`, `purse.terminal.CardHotlisted`: the card may not be used
  (a hotlisted card was just blocked). Keep it, and send the holder to the desk.
- `purse.apdu.PinRequired`, `WrongPin`, `PinBlocked`: redemption needs the right PIN. A blocked PIN
  is reset at the desk.
- `purse.apdu.NothingToCancel`: no sale of this terminal to cancel.
- `purse.session.CardNotGenuine` (also `purse.cardsession.CardNotGenuine`): not the issuer's card (its
  cryptogram, or a DESFire card's authentication, failed). Refuse it.
- `purse.desfire.status.DesfireError` subclasses: a DESFire card refused a command (an `ApduError`, exit
  code 5); `purse.desfire.session.PinNotOnDesfire`: points redemption asked of a DESFire card.
- `purse.transport.TransportError` (`NoReader`, `NoCard`, ...): the reader or pcscd failed, or no
  card is there.
- `purse.terminal_log.TerminalLogError`: the terminal log is damaged, so nothing is sent to a card.
  Restore the log from a backup.
- `purse.errors.UserError`: bad input, such as an amount like 12.345 or a wrong passphrase.

**Stability.** From 0.1 on, the names in these modules' ``__all__``, the APDU protocol
(docs/protocol.md) and the batch format (docs/batch-format.md, versioned in its header) change
only with a CHANGELOG entry; the batch format stays readable across versions (format 1 files are
still read). Everything else (modules not listed, names starting with ``_``, the ``_cli``
packages) may change in any release.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("smartpurse")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0"
