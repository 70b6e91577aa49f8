"""Reading the exported reports back (crm.services.excel.report): a title block, then the
header row (the row above the frozen panes), the rows, and what follows (totals, signatures)."""
import io
import re

import openpyxl


def sheet_of(data):
    """The first sheet of an .xlsx (bytes), read whole (not read-only: print setup included)."""
    return openpyxl.load_workbook(io.BytesIO(data)).worksheets[0]


def header_row(sheet):
    """The number of the header row: the one above the frozen panes."""
    return int(re.match(r"[A-Z]+(\d+)$", sheet.freeze_panes).group(1)) - 1


def report_rows(data):
    """The header row and every row below it, as tuples of values without trailing blanks."""
    sheet = sheet_of(data)
    rows = []
    for row in sheet.iter_rows(min_row=header_row(sheet), values_only=True):
        values = list(row)
        while values and values[-1] is None:
            values.pop()
        rows.append(tuple(values))
    return rows


def title_lines(data):
    """The text of the title block above the header (shop · what, period, made at …)."""
    sheet = sheet_of(data)
    return [row[0] for row in sheet.iter_rows(max_row=header_row(sheet) - 1, values_only=True)
            if row and row[0]]
