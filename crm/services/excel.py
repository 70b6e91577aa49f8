"""Writing .xlsx files: one helper for every export, streaming rows (openpyxl write-only).
openpyxl is imported when a file is made, not when the app starts: it costs every server process
about 20 MB that most of them never need (the same for fpdf2 in crm.services.pdf)."""
import io


def cell(sheet, value):
    """A write-only cell of `sheet`. Text is always a string cell, never a formula: openpyxl
    makes any text starting with "=" a formula, and a customer named `=HYPERLINK(…)` would run
    in Excel or WPS (OWASP's advice on formula injection: user text stays text)."""
    from openpyxl.cell import WriteOnlyCell

    made = WriteOnlyCell(sheet, value=value)
    if isinstance(value, str):
        made.data_type = "s"
    return made


def text_row(sheet, values):
    """A row of cells for a write-only sheet, text as string cells (cells made already pass)."""
    return [v if hasattr(v, "data_type") else cell(sheet, v) for v in values]


def keep_text(sheet):
    """In a normal (not write-only) sheet already filled: every text cell a string cell."""
    for row in sheet.iter_rows():
        for item in row:
            if isinstance(item.value, str):
                item.data_type = "s"


def write_table(title, headers, rows, widths=None):
    """An .xlsx (bytes) with one sheet: a bold, frozen header row, then the rows."""
    import openpyxl
    from openpyxl.styles import Font

    book = openpyxl.Workbook(write_only=True)
    sheet = book.create_sheet(title[:31])
    sheet.freeze_panes = "A2"
    for index, width in enumerate(widths or ()):
        sheet.column_dimensions[openpyxl.utils.get_column_letter(index + 1)].width = width
    bold = Font(bold=True)
    header = []
    for text in headers:
        made = cell(sheet, text)
        made.font = bold
        header.append(made)
    sheet.append(header)
    for row in rows:
        sheet.append(text_row(sheet, row))
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
