"""A card's statement as its holder reads it: what happened, where, and the balance and points after,
filtered by dates and kinds; as a page, a CSV for a spreadsheet, or a PDF to keep.

The lines are the card's own certified records that processing holds, so the statement ends at the
last processed batch, like the balance above it. Merchants are named, terminals are not: a holder
knows "Cafe North", not terminal 7.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, select

from processing.presentation import Presentation
from processing.schema.processing import money_effect_sql, records
from processing.schema.registry import merchants
from processing.settlement import day_number
from purse.errors import UserError
from purse.protocol import RecordType
from purse.records import record_details

__all__ = ["StatementLine", "KINDS", "statement_lines", "statement_csv", "statement_pdf", "find_font"]

KINDS = tuple(k.name.lower() for k in RecordType)
MAX_LINES = 5000  # a page or a file of more than this is cut, the newest kept (said on the page)
# Fonts with Cyrillic where Debian, Ubuntu and Fedora put them: a statement in Russian needs one.
FONT_CANDIDATES = ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
                   "/usr/share/fonts/dejavu/DejaVuSans.ttf",
                   "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
                   "/usr/share/fonts/liberation-sans/LiberationSans-Regular.ttf")


@dataclass(frozen=True)
class StatementLine:
    time: int  # unix seconds, the card's clock
    counter: int
    kind: str  # purchase, cancel, load, block, cash_out
    merchant: str
    amount: int  # signed minor units: what it did to the money on the card
    balance_after: int
    points_earned: int
    points_redeemed: int
    points_after: int | None  # None: the record belongs to no program


def statement_lines(conn: Connection, number: str, start: dt.date | None = None, end: dt.date | None = None,
                    kinds: frozenset[str] = frozenset()) -> list[StatementLine]:
    """The card's records from ``start`` to ``end`` (the card's days), only ``kinds`` when given; oldest first."""
    r, m = records.c, merchants.c
    query = select(r.counter, r.record_type, r.merchant_id, money_effect_sql(r.record_type, r.amount), r.raw) \
        .where(r.card_number == number)
    if start is not None:
        query = query.where(r.day >= day_number(start))
    if end is not None:
        query = query.where(r.day <= day_number(end))
    if kinds:
        query = query.where(r.record_type.in_([RecordType[k.upper()].value for k in kinds]))
    shops = {int(i): str(n) for i, n in conn.execute(select(m.merchant_id, m.name))}
    rows = conn.execute(query.order_by(r.counter.desc()).limit(MAX_LINES)).all()
    lines = []
    for counter, kind, merchant_id, signed, raw in reversed(rows):
        d = record_details(bytes(raw))
        lines.append(StatementLine(d.time, int(counter), RecordType(kind).name.lower(),
                                   shops.get(int(merchant_id), "") if merchant_id else "", int(signed),
                                   d.balance_after, d.points_earned, d.points_redeemed,
                                   d.points_after if d.program_id else None))
    return lines


def _local(unix: int, zone: ZoneInfo) -> str:
    return dt.datetime.fromtimestamp(unix, dt.UTC).astimezone(zone).strftime("%Y-%m-%d %H:%M")


def statement_csv(lines: list[StatementLine], look: Presentation, zone: ZoneInfo, words: dict[str, str]) -> bytes:
    """The lines as CSV in the reader's locale (``;`` and a decimal comma in Russian), UTF-8 with a BOM
    so that Excel reads the Cyrillic."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=look.csv_delimiter, lineterminator="\r\n")
    writer.writerow([words["col_time"], words["col_kind"], words["col_where"], words["col_amount"],
                     words["col_balance"], words["col_points"]])
    for line in lines:
        writer.writerow([_local(line.time, zone), words[f"kind_{line.kind}"], line.merchant, look.plain(line.amount),
                         look.plain(line.balance_after), "" if line.points_after is None else line.points_after])
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def find_font(configured: str) -> Path:
    """The TrueType font a PDF statement is set in: ``[portal] pdf_font``, else the first system one found."""
    for candidate in ([configured] if configured else list(FONT_CANDIDATES)):
        if Path(candidate).is_file():
            return Path(candidate)
    raise UserError(f"no font for PDF statements: {configured} is not a file" if configured else
                    "no font for PDF statements: install fonts-dejavu-core or set [portal] pdf_font")


def statement_pdf(lines: list[StatementLine], *, title: str, subtitle: str, look: Presentation, zone: ZoneInfo,
                  words: dict[str, str], font: Path) -> bytes:
    """The statement as an A4 PDF: a heading, then one table row per line."""
    from fpdf import FPDF
    from fpdf.fonts import FontFace

    pdf = FPDF(format="A4")
    pdf.set_title(title)
    pdf.set_creator("smartpurse")
    pdf.add_font("body", fname=str(font))
    pdf.add_page()
    pdf.set_font("body", size=14)
    pdf.cell(text=title, new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("body", size=9)
    pdf.multi_cell(0, text=subtitle, new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    with pdf.table(col_widths=(27, 27, 40, 27, 29, 17), text_align=("LEFT", "LEFT", "LEFT", "RIGHT", "RIGHT", "RIGHT"),
                   first_row_as_headings=True, headings_style=FontFace(fill_color=(232, 236, 241))) as table:
        table.row([words["col_time"], words["col_kind"], words["col_where"], words["col_amount"],
                   words["col_balance"], words["col_points"]])
        for line in lines:
            table.row([_local(line.time, zone), words[f"kind_{line.kind}"], line.merchant, look.money(line.amount),
                       look.money(line.balance_after), "" if line.points_after is None else str(line.points_after)])
    return bytes(pdf.output())
