"""Writing .xlsx files: one helper for every export, streaming rows (openpyxl write-only)."""
import io

import openpyxl
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Font


def write_table(title, headers, rows, widths=None):
    """An .xlsx (bytes) with one sheet: a bold, frozen header row, then the rows."""
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
