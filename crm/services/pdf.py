"""PDF documents with Chinese text: fpdf2 with the fonts shipped in static/fonts (DejaVu Sans
for Latin, digits and ¥; Droid Sans Fallback for CJK), embedded so any PC shows them."""
from fpdf import FPDF

from crm.config import PROJECT_ROOT

FONTS = PROJECT_ROOT / "static" / "fonts"


def document(width_mm=210, height_mm=297, margin_mm=10):
    """A new PDF of the given page size, with the fonts registered and "text" as the font."""
    pdf = FPDF(unit="mm", format=(width_mm, height_mm))
    pdf.set_margins(margin_mm, margin_mm, margin_mm)
    pdf.set_auto_page_break(True, margin_mm)
    pdf.add_font("text", fname=str(FONTS / "DejaVuSans.ttf"))
    pdf.add_font("text", style="B", fname=str(FONTS / "DejaVuSans-Bold.ttf"))
    for style in ("", "B"):
        pdf.add_font("cjk", style=style, fname=str(FONTS / "DroidSansFallbackFull.ttf"))
    pdf.set_fallback_fonts(["cjk"], exact_match=False)
    pdf.set_font("text", size=10)
    return pdf
