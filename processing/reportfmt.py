"""Writing a report as CSV (Excel-ready), XLSX (numeric cells, formats, totals) or JSON.

A report is columns with kinds, rows, an optional totals row and a summary. Money
stays integer minor units until the writer: JSON keeps them integers (exact, for
programs); CSV prints them as decimal strings with a dot ("1234.50"); XLSX writes
Decimal values (exact in the file) with a number format. CSV is UTF-8 with a BOM so
Excel detects the encoding (docs/processing.md, "Reports").
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

from purse.errors import UserError
from purse.files import write_atomic
from purse.money import format_amount

FORMATS = ("csv", "xlsx", "json")


@dataclass(frozen=True)
class Col:
    name: str
    kind: str = "text"  # text | int | money | date | datetime


@dataclass
class Report:
    kind: str
    title: str
    columns: list[Col]
    rows: list[list[Any]]
    totals: list[Any] | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    exponent: int = 2


def _text(value: Any, col: Col, exponent: int) -> str:
    if value is None:
        return ""
    if col.kind == "money":
        return format_amount(int(value), exponent)
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def write(report: Report, fmt: str, out: Path) -> Path:
    """Write ``report`` as ``fmt`` to ``out``, whole or not at all (a report can be written again: not fsynced)."""
    if fmt not in FORMATS:
        raise UserError(f"unknown format {fmt!r} (csv, xlsx or json)")
    data = {"csv": _csv, "xlsx": _xlsx, "json": _json}[fmt](report)
    return write_atomic(out, data, durable=False)


def _csv(report: Report) -> bytes:
    buffer = io.StringIO(newline="")
    w = csv.writer(buffer)
    w.writerow([c.name for c in report.columns])
    for row in report.rows:
        w.writerow([_text(v, c, report.exponent) for v, c in zip(row, report.columns, strict=True)])
    if report.totals is not None:
        w.writerow([_text(v, c, report.exponent) for v, c in zip(report.totals, report.columns, strict=True)])
    return buffer.getvalue().encode("utf-8-sig")  # with a BOM: spreadsheets then read it as UTF-8


def _json(report: Report) -> bytes:
    def plain(v: Any) -> Any:
        return v.isoformat() if isinstance(v, dt.date) else v

    doc = {"report": report.kind, "title": report.title, "money": f"integer minor units (10^-{report.exponent})",
           "columns": [c.name for c in report.columns],
           "rows": [{c.name: plain(v) for c, v in zip(report.columns, row, strict=True)} for row in report.rows],
           "totals": None if report.totals is None else
           {c.name: plain(v) for c, v in zip(report.columns, report.totals, strict=True) if v is not None},
           "summary": {k: plain(v) for k, v in report.summary.items()}}
    return (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def _xlsx(report: Report) -> bytes:
    from openpyxl import Workbook
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    wb = Workbook()
    ws = wb.active
    ws.title = report.kind[:31]
    ws.append([c.name for c in report.columns])
    for cell in ws[1]:
        cell.font = Font(bold=True)
    money_fmt = "#,##0." + "0" * report.exponent if report.exponent else "#,##0"
    scale = Decimal(10) ** report.exponent

    def cell_value(v: Any, c: Col) -> Any:
        if v is None:
            return None
        if c.kind == "money":
            return Decimal(int(v)) / scale
        return v

    for row in report.rows:
        ws.append([cell_value(v, c) for v, c in zip(row, report.columns, strict=True)])
    if report.totals is not None:
        ws.append([cell_value(v, c) for v, c in zip(report.totals, report.columns, strict=True)])
        for cell in ws[ws.max_row]:
            cell.font = Font(bold=True)
    for i, c in enumerate(report.columns, 1):
        letter = get_column_letter(i)
        fmt = {"money": money_fmt, "int": "#,##0", "date": "yyyy-mm-dd", "datetime": "yyyy-mm-dd hh:mm:ss"}.get(c.kind)
        if fmt:
            for (cell,) in ws.iter_rows(min_row=2, max_row=ws.max_row, min_col=i, max_col=i):
                cell.number_format = fmt
        ws.column_dimensions[letter].width = max(12, len(c.name) + 2)
    ws.freeze_panes = "A2"
    if report.summary:
        s = wb.create_sheet("summary")
        for k, v in report.summary.items():
            s.append([k, v])
    buffer = io.BytesIO()
    wb.save(buffer)
    return buffer.getvalue()
