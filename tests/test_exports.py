"""Exports that open right in Excel and WPS (issue 19.8): every .xlsx — the customer list, the
statement, the four chart files, the daily closing and the import template — has a title row
with the shop's name and the period, set column widths, a frozen header that repeats on every
printed page, money as numbers in a ¥ format, dates as real dates, and A4 fitted to the width.
The customer list carries card numbers and balances; the statement (Excel and PDF) the payment
method and the discount; the closing the totals per payment method and lines to sign."""
import datetime
import decimal
from urllib.parse import unquote

import pytest
from openpyxl.utils import get_column_letter
from playwright.sync_api import expect

from crm.services import cards, excel
from tests.conftest import PASSWORD, pdf_text
from tests.ledger_helpers import key, make_shop
from tests.test_browser import log_in
from tests.xlsx_helpers import header_row, report_rows, sheet_of, title_lines

SHOP = "我的小店"


def check_report(data, money=(), dates=()):
    """The layout every export shares; `money` and `dates`: the header names of such columns,
    whose data cells must be numbers in the ¥ format and real dates."""
    sheet = sheet_of(data)
    header = header_row(sheet)
    assert SHOP in sheet["A1"].value and sheet["A1"].font.b
    assert sheet.freeze_panes == f"A{header + 1}"
    assert sheet.print_title_rows == f"${header}:${header}"
    assert str(sheet.page_setup.paperSize) == excel.A4 and sheet.page_setup.fitToWidth == 1
    assert sheet.sheet_properties.pageSetUpPr.fitToPage
    headers = [c.value for c in sheet[header]]
    while headers and headers[-1] is None:
        headers.pop()
    assert all(headers) and all(c.font.b for c in sheet[header][:len(headers)])
    for index in range(len(headers)):
        assert sheet.column_dimensions[get_column_letter(index + 1)].customWidth, headers[index]
    data_rows = list(sheet.iter_rows(min_row=header + 1))
    for name in money:
        column = headers.index(name)
        cells = [r[column] for r in data_rows if r[column].value is not None
                 and not isinstance(r[column].value, str)]
        assert cells, name
        for item in cells:
            assert isinstance(item.value, int | float | decimal.Decimal), (name, item.value)
            assert item.number_format == excel.MONEY, (name, item.number_format)
    for name in dates:
        column = headers.index(name)
        cells = [r[column] for r in data_rows[:3] if r[column].value is not None]
        assert cells, name
        for item in cells:
            assert isinstance(item.value, datetime.datetime), (name, item.value)
            assert item.number_format in ("yyyy-mm-dd", "yyyy-mm-dd hh:mm:ss"), name
    return sheet


@pytest.fixture
def trading(app):
    """A shop (members get 88 %) with a card opened with 500.00 by WeChat, a 100.00 charge,
    and a second card."""
    shop = make_shop(app, discount=88)
    card_id = shop.open_card(amount=50000, bonus=0, payment_method="wechat", card_no="EX-0001")
    shop.open_card(card_no="EX-0002")
    shop.do(lambda: cards.consume(shop.operator, card_id, key(), 10000))
    return shop


def _filename(resp):
    return unquote(resp.headers["Content-Disposition"].split("filename*=UTF-8''")[1])


def test_the_customer_list_carries_card_numbers_and_balances(client, auth, trading):
    auth.login("ann", PASSWORD)
    resp = client.get("/customers/export.xlsx")
    check_report(resp.data, money=("余额",), dates=("建档时间",))
    assert "范围：正常客户" in title_lines(resp.data)[1]
    rows = report_rows(resp.data)
    row = next(r for r in rows if r[1] == "张三")
    header = rows[0]
    assert row[header.index("卡号")] == "EX-0001、EX-0002" and row[header.index("卡数")] == 2
    assert float(row[header.index("余额")]) == 412.0
    assert _filename(resp).startswith("客户名单_20") and _filename(resp).endswith(".xlsx")


def test_the_statement_carries_payment_method_and_discount(client, auth, trading):
    auth.login("ann", PASSWORD)
    url = f"/customers/{trading.customer_id}/statement"
    resp = client.get(url + ".xlsx?preset=month")
    check_report(resp.data, money=("金额", "交易后余额"), dates=("时间",))
    lines = title_lines(resp.data)
    assert "客户对账单" in lines[0] and "期间：" in lines[2] and "制表时间" in lines[3]
    rows = report_rows(resp.data)
    header = rows[0]
    sale = next(r for r in rows[1:] if len(r) > 2 and r[2] == "消费")
    assert sale[header.index("折扣")] == "8.8 折（原价 ¥100.00）"
    paid = next(r for r in rows[1:] if len(r) > 2 and r[2] == "充值")
    assert paid[header.index("支付方式")] == "微信"
    name = _filename(resp)
    assert name.startswith("对账单_张三_") and name.endswith(".xlsx")
    text = pdf_text(client.get(url + ".pdf?preset=month").data)
    for expected in ("支付方式", "折扣", "微信", "8.8 折（原价 ¥100.00）", "-¥88.00"):
        assert expected in text, expected


@pytest.mark.parametrize("chart,money,dates", [
    ("daily", ("充值", "消费"), ("日期",)), ("by_type", ("消费",), ()),
    ("top", ("消费",), ()), ("activity", (), ())])
def test_every_chart_file(client, auth, trading, chart, money, dates):
    auth.login("ann", PASSWORD)
    resp = client.get(f"/stats/{chart}.xlsx?preset=month")
    check_report(resp.data, money=money, dates=dates)
    assert title_lines(resp.data)[1].startswith("期间：")


def test_the_daily_closing_has_method_totals_and_signatures(client, auth, trading):
    auth.login("ann", PASSWORD)
    resp = client.get("/closing.xlsx")
    check_report(resp.data, money=("金额",))
    lines = title_lines(resp.data)
    assert "日结交班表" in lines[0] and lines[1].startswith("日期：") and "操作员：全部" in lines[2]
    rows = report_rows(resp.data)
    assert ("微信收款合计", "微信", None, 500) in rows and ("现金收款合计", "现金", None, 0) in rows
    assert ("钱箱应有现金", "现金", None, 0) in rows
    assert ("交班人签名：", None, "接班人签名：") in rows


def test_the_import_template(client, auth, trading):
    auth.login("ann", PASSWORD)
    resp = client.get("/customers/import/template.xlsx")
    sheet = check_report(resp.data)
    assert "客户导入模板" in sheet["A1"].value


@pytest.mark.backends("sqlite")
def test_the_printed_closing_has_the_shop_and_signature_lines(app, page):
    """On paper the closing page carries the shop's name and the lines to sign; on screen not."""
    make_shop(app)
    log_in(page, "ann")
    page.goto("/closing")
    expect(page.locator("#closing-signature")).to_be_hidden()
    page.emulate_media(media="print")
    expect(page.locator("#closing-shop")).to_have_text(f"{SHOP} · 日结交班表")
    expect(page.locator("#closing-signature")).to_contain_text("交班人签名")
    expect(page.locator("#side-menu")).to_be_hidden()


def test_a_money_column_takes_integer_fen_only():
    """A Decimal or float amount would be written unscaled (100 times too big): refused."""
    columns = (excel.Column("金额", 12, "money"),)
    assert excel.report("x", "店", [], columns, [(12345,)])
    for wrong in (decimal.Decimal("123.45"), 123.45, True):
        with pytest.raises(TypeError):
            excel._typed(None, wrong, "money")  # before any cell is made


def test_control_characters_in_exported_text_are_shown_not_refused(client, auth, trading):
    """A search typed with ESC (schemathesis sent ?q=%1B) reached the export's title line and
    openpyxl refused the file: a 500. Control characters are written as "?"."""
    auth.login("ann", PASSWORD)
    resp = client.get("/customers/export.xlsx?q=%1B&archived=1")
    assert resp.status_code == 200
    assert "查找“?”" in title_lines(resp.data)[1]


def test_the_statement_page_says_the_discount_as_the_exports_do(client, auth, trading):
    auth.login("ann", PASSWORD)
    page = client.get(f"/customers/{trading.customer_id}/statement?preset=month").get_data(
        as_text=True)
    assert "（8.8 折（原价 ¥100.00））" in page
