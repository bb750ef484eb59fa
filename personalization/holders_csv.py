"""The holders CSV for ``cards issue --from``: checked whole before a single card is written.

Every row is validated and every problem reported (beancount's habit: collect all
discrepancies, don't stop at the first), so a bad file costs one round of fixing and
never leaves half a batch issued (docs/personalization.md, "Holders CSV").
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from dataclasses import dataclass
from pathlib import Path

from purse.errors import UserError
from purse.settings import DEFAULTS

REQUIRED = ("name", "phone", "email")
OPTIONAL = ("program", "tier", "pin", "email_consent", "sms_consent", "language")
# A consent column's answers (English and Russian); an empty cell records nothing, so no consent.
_YES, _NO = frozenset({"yes", "y", "true", "1", "да", "д"}), frozenset({"no", "n", "false", "0", "нет", "н"})
LANGUAGES = ("en", "ru")
EMAIL = re.compile(r"^[^@\s,;<>\"]+@[^@\s,;<>\"]+\.[^@\s,;<>\".]{2,}$")
DEFAULT_REGION = DEFAULTS.issuer.phone_region


@dataclass(frozen=True)
class HolderRow:
    row: int  # line number in the file, as a spreadsheet shows it (header is 1)
    name: str
    phone: str
    email: str
    program: int | None = None
    tier: int | None = None
    pin: str | None = None
    consents: tuple[tuple[str, bool], ...] = ()  # (channel, granted) from the email_consent/sms_consent columns
    language: str | None = None


@dataclass(frozen=True)
class Problem:
    row: int
    message: str

    def __str__(self) -> str:
        return f"row {self.row}: {self.message}" if self.row else self.message


class HoldersCsvError(UserError):
    """The CSV cannot be issued; ``problems`` holds every reason, row by row."""

    def __init__(self, source: str, problems: list[Problem]) -> None:
        self.problems = problems
        first = "; ".join(str(p) for p in problems[:3])
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        super().__init__(f"{source}: {len(problems)} problem(s), nothing issued: {first}{more}")


def normalize_phone(text: str, region: str = DEFAULT_REGION) -> str | None:
    """``+7 (912) 345-67-89`` -> ``+79123456789`` (E.164, by the ``phonenumbers`` library); None when it is
    not a valid number. A number written without ``+`` is read as a number of ``region`` (the issuer's
    country, ``[issuer] phone_region``); digits other than ASCII ones are refused, not read."""
    import phonenumbers

    if not text.isascii():
        return None
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def ascii_digits(text: str) -> bool:
    """Digits a machine means: 0-9 only (``str.isdigit`` also takes ``١٢٣`` and ``²³``, which ``int`` half-reads)."""
    return bool(text) and text.isascii() and text.isdigit()


def normalize_email(text: str) -> str | None:
    email = text.strip().lower()
    return email if len(email) <= 254 and EMAIL.match(email) else None


def _small_int(text: str, low: int, high: int) -> int | None:
    text = text.strip()
    if not ascii_digits(text):
        return None
    value = int(text)
    return value if low <= value <= high else None


def _parse_row(number: int, raw: dict[str, str], problems: list[Problem], region: str) -> HolderRow | None:
    found = len(problems)
    name = (raw.get("name") or "").strip()
    if not name or len(name) > 200 or any(ord(c) < 32 for c in name):
        problems.append(Problem(number, f"bad name {name!r}" if name else "name is empty"))
    phone = normalize_phone(raw.get("phone") or "", region)
    if phone is None:
        problems.append(Problem(number, f"bad phone {raw.get('phone')!r}"))
    email = normalize_email(raw.get("email") or "")
    if email is None:
        problems.append(Problem(number, f"bad e-mail {raw.get('email')!r}"))
    program = tier = None
    if (raw.get("program") or "").strip():
        program = _small_int(raw["program"], 1, 0xFFFF)
        if program is None:
            problems.append(Problem(number, f"bad program {raw['program']!r} (a program id 1..65535)"))
    if (raw.get("tier") or "").strip():
        tier = _small_int(raw["tier"], 0, 255)
        if tier is None:
            problems.append(Problem(number, f"bad tier {raw['tier']!r} (a tier index 0..255)"))
    pin = (raw.get("pin") or "").strip() or None
    if pin is not None and not (ascii_digits(pin) and 4 <= len(pin) <= 12):
        problems.append(Problem(number, "bad PIN (4 to 12 digits)"))
    consents: list[tuple[str, bool]] = []
    for channel in ("email", "sms"):
        answer = (raw.get(f"{channel}_consent") or "").strip().lower()
        if answer in _YES or answer in _NO:
            consents.append((channel, answer in _YES))
        elif answer:
            problems.append(Problem(number, f"bad {channel}_consent {raw[f'{channel}_consent']!r} (yes or no)"))
    language = (raw.get("language") or "").strip().lower() or None
    if language is not None and language not in LANGUAGES:
        problems.append(Problem(number, f"bad language {raw['language']!r} ({' or '.join(LANGUAGES)})"))
    if len(problems) > found or phone is None or email is None:
        return None
    return HolderRow(number, name, phone, email, program, tier, pin, tuple(consents), language)


def parse_holders(data: bytes, source: str = "holders.csv", region: str = DEFAULT_REGION) -> list[HolderRow]:
    """All rows, or ``HoldersCsvError`` listing every problem of the file."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise HoldersCsvError(source, [Problem(line, f"not UTF-8 text (byte {e.start}); save the file as UTF-8")]) \
            from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise HoldersCsvError(source, [Problem(1, f"missing column(s) {', '.join(missing)} "
                                                  f"(need {', '.join(REQUIRED)}; optional {', '.join(OPTIONAL)})")])
    reader.fieldnames = header
    rows: list[HolderRow] = []
    problems: list[Problem] = []
    seen_email: dict[str, int] = {}
    seen_phone: dict[str, int] = {}
    try:
        for raw in reader:
            number = reader.line_num
            if None in raw:
                problems.append(Problem(number, "more fields than columns"))
                continue
            if not any((v or "").strip() for v in raw.values()):
                continue  # a blank line is not a holder
            row = _parse_row(number, raw, problems, region)
            if row is None:
                continue
            for key, seen, what in ((row.email, seen_email, "e-mail"), (row.phone, seen_phone, "phone")):
                if key in seen:
                    problems.append(Problem(number, f"duplicate holder: same {what} as row {seen[key]}"))
                    row = None
                    break
                seen[key] = number
            if row is not None:
                rows.append(row)
    except csv.Error as e:
        problems.append(Problem(reader.line_num, f"not valid CSV: {e}"))
    if problems:
        raise HoldersCsvError(source, problems)
    if not rows:
        raise HoldersCsvError(source, [Problem(0, "no holders in the file")])
    return rows


def read_holders(path: Path, region: str = DEFAULT_REGION) -> tuple[list[HolderRow], str]:
    """The holders of ``path`` and a fingerprint of its bytes (names the batch for resuming)."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise UserError(f"no such file: {path}") from None
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror}") from None
    return parse_holders(data, str(path), region), hashlib.sha256(data).hexdigest()[:12]
