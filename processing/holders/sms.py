"""How long an SMS is on the wire: GSM-7 or UCS-2, and how many parts the gateway bills.

A text in the GSM 7-bit default alphabet (3GPP TS 23.038 §6.2.1) fits 160 characters in one SMS and
153 a part when split (the user data header takes the rest); the extension table's characters
(``{ } [ ] ~ \\ | ^ €`` and the form feed) take two. Any other character, Cyrillic among them, sends
the whole text as UCS-2: 70 characters, or 67 a part, counted in UTF-16 code units. The tables are
the standard's, as published.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SmsLength", "sms_length"]

_GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENSION = frozenset("\f^{}\\[~]|€")


@dataclass(frozen=True)
class SmsLength:
    encoding: str  # "GSM-7" or "UCS-2"
    units: int  # septets (extension characters count two) or UTF-16 code units
    parts: int

    @property
    def per_part(self) -> int:
        single, multi = (160, 153) if self.encoding == "GSM-7" else (70, 67)
        return single if self.parts <= 1 else multi


def sms_length(text: str) -> SmsLength:
    """The encoding a gateway sends ``text`` in, its length in that encoding, and the parts it takes."""
    if all(ch in _GSM_BASIC or ch in _GSM_EXTENSION for ch in text):
        units = sum(2 if ch in _GSM_EXTENSION else 1 for ch in text)
        return SmsLength("GSM-7", units, 1 if units <= 160 else -(-units // 153))
    units = len(text.encode("utf-16-le")) // 2
    return SmsLength("UCS-2", units, 1 if units <= 70 else -(-units // 67))
