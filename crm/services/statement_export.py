"""对账单 as Excel (streamed, write-only) and as A4 PDF (Chinese font, repeated header row,
page numbers). Both carry exactly the statement's rows and totals."""
import io
import re

from crm import clock
from crm.errors import ValidationError
from crm.money import format_yuan, yuan_decimal
from crm.services import excel, ledger, pdf, statements

HEADERS = ("时间", "卡号", "业务类型", "金额", "交易后余额", "操作员", "备注")
MONEY = '"¥"#,##0.00;[Red]-"¥"#,##0.00'
TOTAL_LABELS = (("opening_balance", "期初余额"), ("recharge", "充值"), ("bonus", "赠送"),
                ("consume", "消费"), ("reversal", "冲正"), ("refund", "退款"),
                ("net", "净变动"), ("closing_balance", "期末余额"))


_UNSAFE_IN_NAMES = re.compile(r'[\\/:*?"<>|\x00-\x1f\x7f\s]+')


def filename(customer_id, start, end, extension):
    """The statement file's name, the same from the page and the API: 对账单_<name>_<number>_
    <start>_<end>.<ext>, the name without characters a file system refuses."""
    customer = statements.customers.get_customer(customer_id)
    name = _UNSAFE_IN_NAMES.sub("_", customer.name).strip("._")[:30] or "客户"
    return f"对账单_{name}_{customer.customer_no}_{start}_{end}.{extension}"


def _row(entry):
    """One entry as the exports show it: time, card, type, signed amount, balance, operator, remark."""
    return (entry.created_at, entry.card_no,
            ledger.BUSINESS_TYPES.get(entry.business_type, entry.business_type),
            entry.amount, entry.balance_after, entry.display_name or entry.username, entry.remark)


def _title(shop_name, customer, start, end):
    return [(f"{shop_name} · 客户对账单",),
            (f"客户：{customer.name}（编号 {customer.customer_no}，电话 {customer.phone}）",),
            (f"期间：{start.isoformat()} 至 {end.isoformat()}",),
            (f"制表时间：{clock.now().strftime('%Y-%m-%d %H:%M:%S')}",)]


def xlsx(shop_name, customer_id, start, end):
    """The whole period's statement as .xlsx bytes, streamed row by row from the database."""
    import openpyxl
    from openpyxl.styles import Font

    customer = statements.customers.get_customer(customer_id)
    summary = statements.totals(customer_id, start, end)
    book = openpyxl.Workbook(write_only=True)
    sheet = book.create_sheet("对账单")
    for letter, width in zip("ABCDEFG", (20, 14, 10, 14, 14, 12, 30), strict=True):
        sheet.column_dimensions[letter].width = width
    title = _title(shop_name, customer, start, end)
    sheet.freeze_panes = f"A{len(title) + 2}"  # the title block and the header row stay
    for index, line in enumerate(title):
        cell = excel.cell(sheet, line[0])
        cell.font = Font(bold=index == 0, size=14 if index == 0 else 11)
        sheet.append([cell])
    sheet.append([_bold(sheet, h) for h in HEADERS])
    for entry in statements.entries_query(customer_id, start, end).objects().iterator():
        values = list(_row(entry))
        row = excel.text_row(sheet, values)  # a name or remark such as "=HYPERLINK(…)" stays text
        row[0].number_format = "yyyy-mm-dd hh:mm:ss"
        for money in (3, 4):
            row[money].value = yuan_decimal(values[money])
            row[money].number_format = MONEY
        sheet.append(row)
    sheet.append([])
    for key, label in TOTAL_LABELS:
        amount = excel.cell(sheet, yuan_decimal(summary[key]))
        amount.number_format = MONEY
        sheet.append([_bold(sheet, label), None, None, amount])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _bold(sheet, text):
    from openpyxl.styles import Alignment, Font

    cell = excel.cell(sheet, text)
    cell.font = Font(bold=True)
    cell.alignment = Alignment(horizontal="left")
    return cell


def _page_number(doc):
    """第 n / N 页 at the foot of an A4 page."""
    doc.set_y(-12)
    doc.set_font("text", size=8)
    doc.cell(0, 6, f"第 {doc.page_no()} / {{nb}} 页", align="C")


# A PDF is laid out whole in memory (fpdf2): 50,000 entries took 98 s and 165 MB per request.
# Beyond this many entries (about 50 A4 pages) the PDF is refused and Excel, which streams, is
# offered instead (figures: bench/statement_pdf.py).
PDF_MAX_ENTRIES = 2_000


def pdf_refusal(entries):
    """The refusal for a period too long for one PDF, or None."""
    if PDF_MAX_ENTRIES is None or entries <= PDF_MAX_ENTRIES:
        return None
    return ValidationError(f"这段期间有 {entries} 笔流水，PDF 最多 {PDF_MAX_ENTRIES} 笔（约 50 页）："
                           "请缩短期间分几次导出 PDF，或导出 Excel（不限笔数）",
                           code="statement_too_long_for_pdf", field="end")


def pdf_bytes(shop_name, customer_id, start, end):
    """The whole period's statement as an A4 PDF (bytes); refused beyond PDF_MAX_ENTRIES."""
    customer = statements.customers.get_customer(customer_id)
    summary = statements.totals(customer_id, start, end)
    refusal = pdf_refusal(summary["entries"])
    if refusal:
        raise refusal
    doc = pdf.document(margin_mm=12, footer=_page_number)
    doc.add_page()
    for index, (line,) in enumerate(_title(shop_name, customer, start, end)):
        doc.set_font("text", "", 15 if index == 0 else 9)
        doc.cell(0, 8 if index == 0 else 5, line, new_x="LMARGIN", new_y="NEXT")
    doc.ln(2)
    doc.set_font("text", size=8)
    widths = (32, 24, 16, 22, 22, 18, 52)

    def rows():
        for entry in statements.entries_query(customer_id, start, end).objects().iterator():
            time, card_no, kind, amount, balance, operator, remark = _row(entry)
            yield (time.strftime("%Y-%m-%d %H:%M:%S"), card_no, kind, format_yuan(amount),
                   format_yuan(balance), operator, remark)

    pdf.table(doc, widths, ("L", "L", "L", "R", "R", "L", "L"), HEADERS, rows())
    doc.ln(4)
    doc.set_font("text", size=10)
    for key, label in TOTAL_LABELS:
        doc.cell(30, 6, label)
        doc.cell(40, 6, format_yuan(summary[key]), align="R", new_x="LMARGIN", new_y="NEXT")
    return bytes(doc.output())
