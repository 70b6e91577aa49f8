"""Writing .xlsx files: one helper for every export, streaming rows (openpyxl write-only).
openpyxl is imported when a file is made, not when the app starts: it costs every server process
about 20 MB that most of them never need (the same for fpdf2 in crm.services.pdf)."""
import datetime
import io
from dataclasses import dataclass

from crm import clock
from crm.money import yuan_decimal


def cell(sheet, value):
    """A write-only cell of `sheet`. Text is always a string cell, never a formula: openpyxl
    makes any text starting with "=" a formula, and a customer named `=HYPERLINK(…)` would run
    in Excel or WPS (OWASP's advice on formula injection: user text stays text)."""
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    if isinstance(value, str):
        # A control character (a search typed with ESC, a pasted remark) cannot be stored in a
        # worksheet: openpyxl refuses the whole file. It is shown as "?" instead.
        value = ILLEGAL_CHARACTERS_RE.sub("?", value)
    made = WriteOnlyCell(sheet, value=value)
    if isinstance(value, str):
        made.data_type = "s"
    return made


def keep_text(sheet):
    """In a normal (not write-only) sheet already filled: every text cell a string cell."""
    for row in sheet.iter_rows():
        for item in row:
            if isinstance(item.value, str):
                item.data_type = "s"


MONEY = '"¥"#,##0.00;[Red]-"¥"#,##0.00'
FORMATS = {"money": MONEY, "count": "0", "date": "yyyy-mm-dd", "datetime": "yyyy-mm-dd hh:mm:ss"}
A4 = "9"  # the paper size code of A4 in SpreadsheetML


@dataclass(frozen=True)
class Column:
    """A column of a report: its header, width (characters) and kind — text, money (fen in,
    a number in ¥ out), count, date or datetime (real dates, not text)."""

    header: str
    width: float
    kind: str = "text"


def _typed(sheet, value, kind):
    """A cell for `value` as its column's kind says. Text stays text whatever the kind (a label
    such as 期初余额 in a date column); an ISO date string in a date column becomes a date."""
    if value is None or value == "":
        return cell(sheet, None)
    if kind in ("date", "datetime") and isinstance(value, str):
        try:
            value = datetime.date.fromisoformat(value) if kind == "date" else \
                datetime.datetime.fromisoformat(value)
        except ValueError:
            return cell(sheet, value)
    if kind == "money":
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"a money column takes integer fen, not {value!r}")
        value = yuan_decimal(value)
    made = cell(sheet, value)
    if kind in FORMATS and not isinstance(value, str):
        made.number_format = FORMATS[kind]
    return made


def page_setup(sheet, header_row, landscape):
    """A sheet that reads and prints well: the rows above and the header row stay in view, the
    header is printed again on every page, A4 fitted to the width, page numbers at the foot."""
    sheet.freeze_panes = f"A{header_row + 1}"
    sheet.print_title_rows = f"{header_row}:{header_row}"
    sheet.page_setup.paperSize = A4
    sheet.page_setup.orientation = "landscape" if landscape else "portrait"
    sheet.page_setup.fitToWidth = 1
    sheet.page_setup.fitToHeight = 0
    sheet.sheet_properties.pageSetUpPr.fitToPage = True
    sheet.oddFooter.center.text = "第 &P / &N 页"


def report(sheet_title, heading, facts, columns, rows, after=(), landscape=None):
    """An .xlsx report (bytes), as every export makes it (issue 19.8): the heading (the shop's
    name and what this is) and fact lines (period, made at, …) above a bold header row that
    stays in view and is printed again on every page; the rows typed by their columns (money
    as numbers in ¥, dates as real dates, text always text); then `after` (totals, a signature
    line), typed the same way with its first cell bold. A4, fitted to the page's width,
    landscape when the columns are wide, page numbers at the foot."""
    import openpyxl
    from openpyxl.styles import Alignment, Font

    book = openpyxl.Workbook(write_only=True)
    sheet = book.create_sheet(sheet_title[:31])
    for index, column in enumerate(columns):
        sheet.column_dimensions[openpyxl.utils.get_column_letter(index + 1)].width = column.width
    header_row = len(facts) + 3  # heading, facts, a blank line, then the header
    page_setup(sheet, header_row, landscape if landscape is not None
               else sum(c.width for c in columns) > 95)
    title = cell(sheet, heading)
    title.font = Font(bold=True, size=14)
    sheet.append([title])
    for line in facts:
        sheet.append([cell(sheet, line)])
    sheet.append([])
    bold = Font(bold=True)
    header = []
    for column in columns:
        made = cell(sheet, column.header)
        made.font = bold
        made.alignment = Alignment(horizontal="right" if column.kind in ("money", "count")
                                   else "left")
        header.append(made)
    sheet.append(header)
    for row in rows:
        sheet.append([_typed(sheet, value, column.kind)
                      for value, column in zip(row, columns, strict=False)])
    if after:
        sheet.append([])
    for row in after:
        cells = [_typed(sheet, value, column.kind) for value, column in zip(row, columns,
                                                                             strict=False)]
        if cells:
            cells[0].font = bold
        sheet.append(cells)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def made_at():
    """The 制表时间 line of a report."""
    return f"制表时间：{clock.now().strftime('%Y-%m-%d %H:%M:%S')}"


def period_line(start, end):
    return f"期间：{start.isoformat()} 至 {end.isoformat()}" if start != end else \
        f"日期：{start.isoformat()}"
