"""Writing .xlsx files: one helper for every export, streaming rows (openpyxl write-only).
openpyxl is imported when a file is made, not when the app starts: it costs every server process
about 20 MB that most of them never need (the same for fpdf2 in crm.services.pdf)."""
import io


def write_table(title, headers, rows, widths=None):
    """An .xlsx (bytes) with one sheet: a bold, frozen header row, then the rows."""
    import openpyxl
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font

    book = openpyxl.Workbook(write_only=True)
    sheet = book.create_sheet(title[:31])
    sheet.freeze_panes = "A2"
    for index, width in enumerate(widths or ()):
        sheet.column_dimensions[openpyxl.utils.get_column_letter(index + 1)].width = width
    bold = Font(bold=True)
    header = []
    for text in headers:
        cell = WriteOnlyCell(sheet, value=text)
        cell.font = bold
        header.append(cell)
    sheet.append(header)
    for row in rows:
        sheet.append(list(row))
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
