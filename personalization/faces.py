"""Card faces: the number, a QR code and a barcode, as SVG or PNG for card printers and wallets.

One layout (``_layout``) drawn by two back ends, so the SVG and the PNG of a card show
the same thing. The QR (segno) and the Code 128 barcode (python-barcode) are drawn as
rectangles from their module matrices rather than pasted as images: the output stays
crisp at any printer resolution. PNG needs Pillow; SVG needs nothing more. All three
are the ``faces`` extra, imported only when a face is drawn.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from xml.sax.saxutils import escape

from purse import cardnumber
from purse.errors import UserError

WIDTH, HEIGHT = 1012, 638  # ISO/IEC 7810 ID-1 (85.60 x 53.98 mm) at 300 dpi
MARGIN = 48
EDGE = 16  # nothing is drawn closer to the card's edge than this
QR_QUIET_MODULES = 4  # ISO/IEC 18004
CODE128_QUIET_MODULES = 10  # ISO/IEC 15417


@dataclass(frozen=True)
class Box:
    x: float
    y: float
    w: float
    h: float


@dataclass(frozen=True)
class Text:
    x: float
    y: float  # baseline
    size: int
    text: str
    mono: bool = False


@dataclass(frozen=True)
class Face:
    boxes: list[Box]
    texts: list[Text]


def qr_text(number: str) -> str:
    """What the QR carries: the bare number, which every scanner and wallet app can use."""
    return number


def _layout(number: str, issuer: str, holder: str | None, expiry: int | None) -> Face:
    import segno  # the faces extra: imported when a face is drawn, so issuing works without it
    from barcode import Code128

    boxes: list[Box] = []
    # A regular QR, never a Micro QR (segno picks Micro QR for a short number when allowed): most
    # phone and POS scanners, and zbar, read no Micro QR.
    qr = segno.make(qr_text(number), error="m", micro=False)
    matrix = [list(row) for row in qr.matrix]
    cell = 250 // len(matrix)
    qx, qy = WIDTH - MARGIN - cell * len(matrix), MARGIN  # MARGIN >= 4 cells: the QR's quiet zone
    assert MARGIN >= QR_QUIET_MODULES * cell
    for r, row in enumerate(matrix):
        for c, dark in enumerate(row):
            if dark:
                boxes.append(Box(qx + c * cell, qy + r * cell, cell, cell))
    modules = Code128(number).build()[0]
    # Code 128 wants a quiet zone of 10 modules on each side: the bars are sized so that it fits
    # inside the card's edge margin, and the symbol is centred.
    bar = (WIDTH - 2 * EDGE) / (len(modules) + 2 * CODE128_QUIET_MODULES)
    x0 = (WIDTH - len(modules) * bar) / 2
    run_start = None
    for i, m in enumerate(modules + "0"):
        if m == "1" and run_start is None:
            run_start = i
        elif m != "1" and run_start is not None:
            boxes.append(Box(x0 + run_start * bar, HEIGHT - MARGIN - 110, (i - run_start) * bar, 110))
            run_start = None
    texts = [Text(MARGIN, MARGIN + 44, 44, issuer), Text(MARGIN, 390, 58, cardnumber.format(number), mono=True)]
    if holder:
        texts.append(Text(MARGIN, 450, 32, holder.upper()))
    if expiry:
        texts.append(Text(WIDTH - MARGIN - 320, 450, 32,
                          "VALID THRU " + datetime.fromtimestamp(expiry, UTC).strftime("%m/%y")))
    return Face(boxes, texts)


def render_svg(face: Face) -> bytes:
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
             f'width="85.6mm" height="53.98mm">',
             f'<rect width="{WIDTH}" height="{HEIGHT}" rx="38" fill="#fff" stroke="#222" stroke-width="2"/>',
             '<path fill="#000" d="' + "".join(f"M{b.x:.2f} {b.y:.2f}h{b.w:.2f}v{b.h:.2f}h{-b.w:.2f}z"
                                               for b in face.boxes) + '"/>']
    for t in face.texts:
        family = "DejaVu Sans Mono, monospace" if t.mono else "DejaVu Sans, sans-serif"
        parts.append(f'<text x="{t.x}" y="{t.y}" font-size="{t.size}" font-family="{family}">{escape(t.text)}</text>')
    parts.append("</svg>\n")
    return "\n".join(parts).encode()


def render_png(face: Face) -> bytes:
    try:
        from PIL import Image, ImageDraw, ImageFont
    except ImportError:
        raise UserError("PNG card faces need Pillow (pip install pillow); SVG works without it") from None
    import io

    image = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(image)
    draw.rounded_rectangle((0, 0, WIDTH - 1, HEIGHT - 1), radius=38, outline="#222", width=2)
    for b in face.boxes:
        draw.rectangle((round(b.x), round(b.y), round(b.x + b.w) - 1, round(b.y + b.h) - 1), fill="black")
    for t in face.texts:
        font: ImageFont.FreeTypeFont | ImageFont.ImageFont
        try:
            font = ImageFont.truetype("DejaVuSansMono.ttf" if t.mono else "DejaVuSans.ttf", t.size)
        except OSError:
            font = ImageFont.load_default(size=t.size)
        draw.text((t.x, t.y), t.text, fill="black", font=font, anchor="ls")
    out = io.BytesIO()
    image.save(out, format="PNG", dpi=(300, 300))
    return out.getvalue()


def write_face(number: str, out: Path, *, issuer: str, holder: str | None = None, expiry: int | None = None) -> Path:
    suffix = out.suffix.lower()
    if suffix not in (".png", ".svg"):
        raise UserError(f"card face file must end in .png or .svg, not {out.name!r}")
    face = _layout(number, issuer, holder, expiry)
    data = render_svg(face) if suffix == ".svg" else render_png(face)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(data)
    except OSError as e:
        raise UserError(f"cannot write {out}: {e.strerror}") from None
    return out
