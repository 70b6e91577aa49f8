"""PDF documents with Chinese text: fpdf2 with the font shipped in static/fonts (WenQuanYi Micro
Hei: Chinese, Latin, digits and ¥ in one font), embedded so that any PC shows it. fpdf2 is
imported when a PDF is made (about 20 MB per server process, see crm.services.excel)."""
from crm.config import PROJECT_ROOT

FONT = PROJECT_ROOT / "static" / "fonts" / "wqy-microhei.ttc"


def document(width_mm=210, height_mm=297, margin_mm=10, footer=None):
    """A new PDF of the given page size, with the font registered as "text" (also as bold);
    `footer(doc)`, if given, draws each page's foot."""
    from fpdf import FPDF

    class Document(FPDF):
        def footer(self):
            if footer is not None:
                footer(self)

    doc = Document(unit="mm", format=(width_mm, height_mm))
    doc.set_margins(margin_mm, margin_mm, margin_mm)
    doc.set_auto_page_break(True, margin_mm + 4)
    for style in ("", "B"):
        doc.add_font("text", style=style, fname=str(FONT))
    doc.set_font("text", size=10)
    return doc
