"""PDF documents with Chinese text: fpdf2 with the font shipped in static/fonts (WenQuanYi Micro
Hei: Chinese, Latin, digits and ¥ in one font), embedded so that any PC shows it. fpdf2 is
imported when a PDF is made (about 20 MB per server process, see crm.services.excel)."""
from crm.config import PROJECT_ROOT

FONT = PROJECT_ROOT / "static" / "fonts" / "wqy-microhei.ttc"


def document(width_mm=210, height_mm=297, margin_mm=10, footer=None):
    """A new PDF of the given page size, with the font registered as "text"; `footer(doc)`, if
    given, draws each page's foot. The font has no bold face: registering the same file again
    as bold cost another 0.9 s of font parsing per PDF, so emphasis is by size and shade."""
    from fpdf import FPDF

    class Document(FPDF):
        def footer(self):
            if footer is not None:
                footer(self)

    doc = Document(unit="mm", format=(width_mm, height_mm))
    doc.set_margins(margin_mm, margin_mm, margin_mm)
    doc.set_auto_page_break(True, margin_mm + 4)
    doc.add_font("text", fname=str(FONT))
    doc.set_font("text", size=10)
    return doc


def table(doc, widths, aligns, header, rows, line_height=5):
    """A bordered table with its header row repeated on every page. A row whose text fits its
    columns is drawn cell by cell: six times faster than fpdf2's table(), which lays every cell
    out as a box of wrapped lines (2,000 entries: 7.6 s → 1.2 s). A row that does not fit wraps,
    every cell of it as tall as its tallest."""
    pad = 2 * doc.c_margin

    def draw_header():
        doc.set_fill_color(230, 230, 230)
        for width, text in zip(widths, header, strict=True):
            doc.cell(width, line_height, text, border=1, fill=True)
        doc.ln(line_height)

    draw_header()
    for row in rows:
        texts = [str(v) for v in row]
        lines = None
        if not all(doc.get_string_width(t) <= w - pad for w, t in zip(widths, texts, strict=True)):
            lines = [doc.multi_cell(w, line_height, t, dry_run=True, output="LINES")
                     for w, t in zip(widths, texts, strict=True)]
        height = line_height * (max(len(cell) for cell in lines) if lines else 1)
        if doc.will_page_break(height):
            doc.add_page()
            draw_header()
        if lines is None:
            for width, text, align in zip(widths, texts, aligns, strict=True):
                doc.cell(width, height, text, border=1, align=align)
            doc.ln(height)
            continue
        x, y = doc.get_x(), doc.get_y()
        for width, text, align in zip(widths, texts, aligns, strict=True):
            doc.set_xy(x, y)
            doc.multi_cell(width, line_height, text, align=align)
            doc.rect(x, y, width, height)
            x += width
        doc.set_xy(doc.l_margin, y + height)
