"""PDF documents with Chinese text: fpdf2 with the font shipped in static/fonts (WenQuanYi Micro
Hei: Chinese, Latin, digits and ¥ in one font), embedded so that any PC shows it."""
from fpdf import FPDF

from crm.config import PROJECT_ROOT

FONT = PROJECT_ROOT / "static" / "fonts" / "wqy-microhei.ttc"


def document(width_mm=210, height_mm=297, margin_mm=10):
    """A new PDF of the given page size, with the font registered as "text" (also as bold)."""
    pdf = FPDF(unit="mm", format=(width_mm, height_mm))
    pdf.set_margins(margin_mm, margin_mm, margin_mm)
    pdf.set_auto_page_break(True, margin_mm)
    for style in ("", "B"):
        pdf.add_font("text", style=style, fname=str(FONT))
    pdf.set_font("text", size=10)
    return pdf
