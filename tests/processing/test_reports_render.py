"""Every XLSX report rendered by LibreOffice (headless, ``soffice --convert-to pdf``), as an accountant
prints it: the settlement report fits its columns on the page width and repeats its header on every page.

Needs Debian's libreoffice-calc-nogui and poppler-utils (pdftotext, pdfinfo): skipped without them, except
under CI, where ``.ci/run`` installs them and a skip would hide a broken print."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
from decimal import Decimal
from pathlib import Path

import pytest
from openpyxl import load_workbook
from support.backoffice import DAY, NOW, World

from processing import reportfmt, reports
from processing.labels import label
from processing.presentation import Presentation

pytestmark = pytest.mark.slow


def _require_tools() -> None:
    missing = [tool for tool in ("soffice", "pdftotext", "pdfinfo") if shutil.which(tool) is None]
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"CI must render the reports, but {', '.join(missing)} is missing", pytrace=False)
        pytest.skip(f"{', '.join(missing)} not installed (apt-get install libreoffice-calc-nogui poppler-utils)")


def _pdf(xlsx: Path, out: Path) -> Path:
    profile = out / "lo-profile"  # a profile of its own: no first-start dialogs, no clash with a desktop session
    subprocess.run(["soffice", f"-env:UserInstallation=file://{profile}", "--headless", "--convert-to", "pdf",
                    "--outdir", str(out), str(xlsx)], check=True, capture_output=True, timeout=120)
    pdf = out / (xlsx.stem + ".pdf")
    assert pdf.is_file() and pdf.stat().st_size > 1000
    return pdf


def _pages(pdf: Path) -> list[str]:
    info = subprocess.run(["pdfinfo", str(pdf)], check=True, capture_output=True, text=True).stdout
    count = int(next(line.split()[-1] for line in info.splitlines() if line.startswith("Pages:")))
    return [subprocess.run(["pdftotext", "-f", str(p), "-l", str(p), "-layout", str(pdf), "-"], check=True,
                           capture_output=True, text=True).stdout for p in range(1, count + 1)]


def test_libreoffice_prints_every_report_and_the_settlement_fits_the_page_width(tmp_path: Path) -> None:
    _require_tools()
    w = World(f"sqlite:///{tmp_path / 'processing.db'}", tmp_path)  # rendering does not depend on the database
    w.merchant(42, name="Кафе «Ромашка»")
    w.merchant(43, name="Corner Market")
    t42, t43 = w.terminal(7, 42), w.terminal(8, 43)
    card = w.card(1, load=5_000_000)
    for day in range(90):  # three months of sales at two merchants: a settlement report of several pages
        t42.purchase(card, 1_000 + day, NOW + day * DAY + 60)
        t43.purchase(card, 2_000 + day, NOW + day * DAY + 120)
    w.process(t42.close(w.tmp / "a.spb"))
    w.process(t43.close(w.tmp / "b.spb"))
    look = Presentation("ru", 643, 2)
    with w.engine.connect() as conn:
        for kind in ("settlement", "float", "statement", "points", "anomalies", "terminals", "cards", "dormant",
                     "journal", "ledger", "trial-balance"):
            rep = reports.build(conn, kind, card=card.number, rate=Decimal(35))
            xlsx = reportfmt.write(rep, "xlsx", tmp_path / f"{kind}.xlsx", look)
            pages = _pages(_pdf(xlsx, tmp_path))
            assert " ".join(rep.title_for("ru").split()[:3]) in " ".join(pages[0].split()), (kind, pages[0][:200])
            if kind == "settlement":  # its data sheet alone (the summary sheet prints after it)
                book = load_workbook(xlsx)
                del book["summary"]
                book.save(tmp_path / "settlement-data.xlsx")
                data_pages = [" ".join(p.split()) for p in _pages(_pdf(tmp_path / "settlement-data.xlsx", tmp_path))]
                headers = [label(c.name, "ru") for c in rep.columns]
                assert len(data_pages) > 1
                for flat in data_pages:  # every column on the page width, and the header on every page
                    assert all(h in flat for h in headers), (headers, flat[:300])


def test_a_statement_prints_as_pdf_with_its_number(tmp_path: Path) -> None:
    _require_tools()
    from processing.settlement import settle

    w = World(f"sqlite:///{tmp_path / 'processing.db'}", tmp_path)
    w.merchant(42, name="Кафе «Ромашка»", fee_bps=150)
    t = w.terminal(7, 42)
    t.purchase(w.card(1, load=100_000), 12_345, NOW + 10)
    w.process(t.close(w.tmp / "a.spb"))
    (statement,) = settle(w.engine, dt.date(2023, 11, 16))  # NOW is 2023-11-14
    with w.engine.connect() as conn:
        document = reports.statement_document(conn, statement.settlement_id)
    pdf = reportfmt.write(document, "pdf", tmp_path / "statement.pdf", Presentation("ru", 643, 2))
    assert pdf.read_bytes().startswith(b"%PDF")
    text = " ".join(" ".join(_pages(pdf)).split())
    assert f"№ {statement.settlement_id}" in text and "Кафе «Ромашка»" in text
    assert "К перечислению, RUB" in text and ("121.60" in text or "121,60" in text)  # as LibreOffice's locale writes it
