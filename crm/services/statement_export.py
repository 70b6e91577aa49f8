"""对账单 as Excel (streamed, write-only) and as A4 PDF (Chinese font, repeated header row,
page numbers). Both carry exactly the statement's rows and totals."""
import re

from crm.errors import ValidationError
from crm.money import format_yuan
from crm.services import excel, ledger, pdf, statements

COLUMNS = (excel.Column("时间", 19, "datetime"), excel.Column("卡号", 14),
           excel.Column("业务类型", 10), excel.Column("金额", 13, "money"),
           excel.Column("交易后余额", 13, "money"), excel.Column("支付方式", 8),
           excel.Column("折扣", 20), excel.Column("操作员", 10), excel.Column("备注", 28))
HEADERS = tuple(column.header for column in COLUMNS)
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


def discount_text(entry):
    """A consumption's member discount, the same on the page and in the exports:
    8.8 折（原价 ¥100.00）; "" when none."""
    if not entry.discount or entry.discount >= 100:
        return ""
    return f"{entry.discount / 10:g} 折（原价 {format_yuan(abs(entry.original_amount))}）"


def _row(entry):
    """One entry as the exports show it: time, card, type, signed amount, balance, payment
    method, discount, operator, remark."""
    return (entry.created_at, entry.card_no,
            ledger.BUSINESS_TYPES.get(entry.business_type, entry.business_type),
            entry.amount, entry.balance_after,
            ledger.PAYMENT_METHODS.get(entry.payment_method or "", ""), discount_text(entry),
            entry.display_name or entry.username, entry.remark)


def _title(shop_name, customer, start, end):
    return [f"{shop_name} · 客户对账单",
            f"客户：{customer.name}（编号 {customer.customer_no}，电话 {customer.phone}）",
            excel.period_line(start, end), excel.made_at()]


def xlsx(shop_name, customer_id, start, end):
    """The whole period's statement as .xlsx bytes, streamed row by row from the database."""
    customer = statements.customers.get_customer(customer_id)
    summary = statements.totals(customer_id, start, end)
    heading, *facts = _title(shop_name, customer, start, end)
    rows = (_row(entry) for entry in
            statements.entries_query(customer_id, start, end).objects().iterator())
    totals = [(label, None, None, summary[key]) for key, label in TOTAL_LABELS]
    return excel.report("对账单", heading, facts, COLUMNS, rows, after=totals)


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
    for index, line in enumerate(_title(shop_name, customer, start, end)):
        doc.set_font("text", "", 15 if index == 0 else 9)
        doc.cell(0, 8 if index == 0 else 5, line, new_x="LMARGIN", new_y="NEXT")
    doc.ln(2)
    doc.set_font("text", size=8)
    widths = (28, 18, 12, 19, 19, 12, 32, 16, 30)

    def rows():
        for entry in statements.entries_query(customer_id, start, end).objects().iterator():
            time, card_no, kind, amount, balance, method, discount, operator, remark = \
                _row(entry)
            yield (time.strftime("%Y-%m-%d %H:%M:%S"), card_no, kind, format_yuan(amount),
                   format_yuan(balance), method, discount, operator, remark)

    pdf.table(doc, widths, ("L", "L", "L", "R", "R", "L", "L", "L", "L"), HEADERS, rows())
    doc.ln(4)
    doc.set_font("text", size=10)
    for key, label in TOTAL_LABELS:
        doc.cell(30, 6, label)
        doc.cell(40, 6, format_yuan(summary[key]), align="R", new_x="LMARGIN", new_y="NEXT")
    return bytes(doc.output())
