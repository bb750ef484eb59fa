"""Writing a report as CSV (Excel-ready), XLSX (numeric cells, formats, totals) or JSON.

A report is columns with kinds, rows, an optional totals row and a summary. Money
stays integer minor units until the writer: JSON keeps them integers and identifiers
(exact, for programs); CSV and XLSX are for people, in the reader's language with the
currency on every money column (``processing.presentation``): CSV writes major units
with the locale's decimal sign (and ``;`` between fields in Russian), XLSX Decimal values
(exact in the file) with a number format and a page setup that prints. Card numbers stay
text. CSV is UTF-8 with a BOM so Excel detects the encoding (docs/processing.md, "Reports").
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from processing.labels import SUMMARY_MONEY, TITLES_RU, label
from processing.presentation import Presentation
from purse.errors import ExitCode, SmartpurseError, UserError
from purse.files import write_atomic

FORMATS = ("csv", "xlsx", "json")
PRINT_FORMATS = (*FORMATS, "pdf")  # pdf: the XLSX as LibreOffice prints it (needs soffice on the machine)


@dataclass(frozen=True)
class Col:
    name: str
    kind: str = "text"  # text | int | money | date | datetime | card (a card number: kept as text)


@dataclass
class Report:
    kind: str
    title: str
    columns: list[Col]
    rows: list[list[Any]]
    totals: list[Any] | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    exponent: int = 2
    title_ru: str = ""  # the title for a Russian reader (``title`` otherwise)

    def title_for(self, language: str) -> str:
        if language != "ru":
            return self.title
        return self.title_ru or TITLES_RU.get(self.kind, self.title)


def _header(col: Col, p: Presentation) -> str:
    """A column's label for people; a money column says its currency ("Net sales, RUB")."""
    text = label(col.name, p.language)
    return f"{text}, {p.currency_code}" if col.kind == "money" else text


def _text(value: Any, col: Col, p: Presentation) -> str:
    if value is None:
        return ""
    if col.kind == "money" and not isinstance(value, str):
        return p.plain(int(value))
    if col.kind == "card" and isinstance(value, str) and value.isdigit():
        return f'="{value}"'  # a formula giving text: a spreadsheet keeps all 16 digits (no 6.277E+15, no rounding)
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def write(report: Report, fmt: str, out: Path, presentation: Presentation | None = None) -> Path:
    """Write ``report`` as ``fmt`` to ``out``, whole or not at all (a report can be written again: not fsynced).

    ``presentation`` says the reader's language and the issuer's currency (CSV and XLSX; JSON stays in
    identifiers and minor units for programs)."""
    if fmt not in PRINT_FORMATS:
        raise UserError(f"unknown format {fmt!r} (csv, xlsx, json or pdf)")
    p = presentation or Presentation(exponent=report.exponent)
    data = {"csv": _csv, "xlsx": _xlsx, "json": _json, "pdf": _pdf}[fmt](report, p)
    return write_atomic(out, data, durable=False)


def _csv(report: Report, p: Presentation) -> bytes:
    """One header row of labels, the data rows, then (after an empty row) the totals: a filter or a sum over
    the data never takes the totals in. Russian: ``;`` between fields and a decimal comma."""
    buffer = io.StringIO(newline="")
    w = csv.writer(buffer, delimiter=p.csv_delimiter)
    w.writerow([_header(c, p) for c in report.columns])
    for row in report.rows:
        w.writerow([_text(v, c, p) for v, c in zip(row, report.columns, strict=True)])
    if report.totals is not None:
        w.writerow([])
        w.writerow([_text(v, c, p) for v, c in zip(report.totals, report.columns, strict=True)])
    return buffer.getvalue().encode("utf-8-sig")  # with a BOM: spreadsheets then read it as UTF-8


def _json(report: Report, p: Presentation) -> bytes:
    def plain(v: Any) -> Any:
        return v.isoformat() if isinstance(v, dt.date) else v

    doc = {"report": report.kind, "title": report.title, "currency": p.currency_code,
           "money": f"integer minor units (10^-{report.exponent})",
           "columns": [c.name for c in report.columns],
           "rows": [{c.name: plain(v) for c, v in zip(report.columns, row, strict=True)} for row in report.rows],
           "totals": None if report.totals is None else
           {c.name: plain(v) for c, v in zip(report.columns, report.totals, strict=True) if v is not None},
           "summary": {k: plain(v) for k, v in report.summary.items()}}
    return (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


class NoLibreOffice(SmartpurseError):
    """A PDF is printed by LibreOffice, which is not installed here."""

    exit_code = ExitCode.MISSING_PART


def _pdf(report: Report, p: Presentation) -> bytes:
    """The XLSX, printed to PDF by LibreOffice (headless): the page setup the XLSX carries is what prints."""
    import shutil
    import subprocess
    import tempfile

    soffice = shutil.which("soffice")
    if soffice is None:
        raise NoLibreOffice("a PDF is printed by LibreOffice, which is not installed "
                            "(apt-get install libreoffice-calc-nogui), or write --format xlsx")
    with tempfile.TemporaryDirectory(prefix="smartpurse-pdf-") as folder:
        xlsx = Path(folder) / f"{report.kind}.xlsx"
        xlsx.write_bytes(_xlsx(report, p))
        done = subprocess.run([soffice, f"-env:UserInstallation=file://{folder}/profile", "--headless",
                               "--convert-to", "pdf", "--outdir", folder, str(xlsx)],
                              capture_output=True, text=True, timeout=180, check=False)
        pdf = xlsx.with_suffix(".pdf")
        if done.returncode or not pdf.is_file():
            said = (done.stderr or done.stdout).strip()[-200:]
            raise SmartpurseError(f"LibreOffice could not print the report: {said}")
        return pdf.read_bytes()


_NUMBER_FORMATS = {"int": "#,##0", "date": "yyyy-mm-dd", "datetime": "yyyy-mm-dd hh:mm:ss", "card": "@"}
_WIDTHS = {"date": 12, "datetime": 20, "card": 21}  # what a date, a time and 16 digits need to show whole


def _xlsx(report: Report, p: Presentation) -> bytes:
    """A sheet that prints as it comes: title with the currency, labelled header repeated on every page,
    autofilter over the data, totals apart, widths that fit, landscape when wide, fit to the page width."""
    from openpyxl import Workbook
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    wb = Workbook()
    ws = wb.active
    ws.title = report.kind[:31]
    ws.append([f"{report.title_for(p.language)} ({p.currency_code})"])
    ws["A1"].font = Font(bold=True, size=12)
    ws.append([_header(c, p) for c in report.columns])
    for cell in ws[2]:
        cell.font = Font(bold=True)
    money_fmt = "#,##0." + "0" * p.exponent if p.exponent else "#,##0"

    def cell_value(v: Any, c: Col) -> Any:
        if v is None:
            return None
        if c.kind == "money" and not isinstance(v, str):
            return p.major(int(v))
        return v

    for row in report.rows:
        ws.append([cell_value(v, c) for v, c in zip(row, report.columns, strict=True)])
    last_data = ws.max_row
    if report.totals is not None:
        ws.append([])
        ws.append([cell_value(v, c) for v, c in zip(report.totals, report.columns, strict=True)])
        for cell in ws[ws.max_row]:
            cell.font = Font(bold=True)
    for i, c in enumerate(report.columns, 1):
        letter = get_column_letter(i)
        fmt = money_fmt if c.kind == "money" else _NUMBER_FORMATS.get(c.kind)
        if fmt:
            for (cell,) in ws.iter_rows(min_row=3, max_row=ws.max_row, min_col=i, max_col=i):
                cell.number_format = fmt
        shown = [len(_text(v, c, p)) for v in (r[i - 1] for r in [*report.rows, report.totals or []]
                                                if len(r) >= i)]
        width = max([len(_header(c, p)), *shown, _WIDTHS.get(c.kind, 0)]) + 2
        ws.column_dimensions[letter].width = min(max(width, 8), 60)
    ws.freeze_panes = "A3"
    if report.rows:
        ws.auto_filter.ref = f"A2:{get_column_letter(len(report.columns))}{last_data}"
    ws.print_title_rows = "2:2"  # the header on every printed page
    ws.page_setup.paperSize = ws.PAPERSIZE_A4
    ws.page_setup.orientation = "landscape" if len(report.columns) > 5 else "portrait"
    ws.sheet_properties.pageSetUpPr.fitToPage = True
    ws.page_setup.fitToWidth, ws.page_setup.fitToHeight = 1, 0  # all columns on the page width, as many pages down
    if report.summary:
        s = wb.create_sheet("summary")
        s.append([label("item", p.language), label("figure", p.language)])
        for cell in s[1]:
            cell.font = Font(bold=True)
        for k, v in report.summary.items():
            if k in SUMMARY_MONEY and isinstance(v, int):
                s.append([f"{label(k, p.language)}, {p.currency_code}", p.major(v)])
                s.cell(s.max_row, 2).number_format = money_fmt
            else:
                s.append([label(k, p.language), v if isinstance(v, int | Decimal | dt.date) or v is None else str(v)])
        s.column_dimensions["A"].width = 44
        s.column_dimensions["B"].width = 24
    buffer = io.BytesIO()
    wb.save(buffer)
    return buffer.getvalue()
