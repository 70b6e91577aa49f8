"""对账单: the entries and totals of a period, reconciling; Excel and PDF exports; bad periods."""
import datetime
import random
import subprocess

import pytest

from crm import clock as crm_clock
from crm.models import CardRecord
from crm.services import cards, statements
from tests.conftest import AuthActions, pdf_text
from tests.ledger_helpers import key, make_shop
from tests.xlsx_helpers import report_rows, title_lines

DAY = datetime.date(2026, 3, 2)


def at(monkeypatch, moment):
    """Money moved inside this block is stamped `moment` (the app's clock stands still there)."""
    return crm_clock.travel(moment, frozen=True)


@pytest.fixture
def history(app, monkeypatch):
    """A customer with two cards and entries before, inside and after 2026-03-02 … 03-04."""
    shop = make_shop(app)

    def moment(day_offset, hour):
        return datetime.datetime.combine(DAY + datetime.timedelta(days=day_offset),
                                         datetime.time(hour))

    with at(monkeypatch, moment(-1, 10)):
        first = shop.open_card(amount=50000, bonus=5000, card_no="S-0001")
    with at(monkeypatch, moment(0, 9)):
        second = shop.open_card(amount=20000, bonus=0, card_no="S-0002")
        shop.do(lambda: cards.consume(shop.operator, first, key(), 12345, remark="烫发"))
    with at(monkeypatch, moment(1, 15)):
        consumed = shop.do(lambda: cards.consume(shop.operator, second, key(), 3000))
    with at(monkeypatch, moment(2, 18)):
        shop.do(lambda: cards.reverse(shop.admin, consumed.record_id, key(), "收错"))
        shop.do(lambda: cards.recharge(shop.operator, first, key(), 10000, bonus=1000,
                                       payment_method="wechat"))
    with at(monkeypatch, moment(3, 11)):
        shop.do(lambda: cards.consume(shop.operator, first, key(), 500))
    return shop, first, second


def test_statement_lists_the_period_and_reconciles(app, history):
    """Entries of both cards inside the period, in time order; totals; opening + net = closing."""
    shop = history[0]
    result = shop.do(lambda: statements.statement(shop.customer_id, DAY,
                                                  DAY + datetime.timedelta(days=2)))
    kinds = [(e.card_no, e.business_type, e.amount) for e in result.entries]
    assert kinds == [("S-0002", "recharge", 20000), ("S-0001", "consume", -12345),
                     ("S-0002", "consume", -3000), ("S-0002", "reversal", 3000),
                     ("S-0001", "recharge", 10000), ("S-0001", "bonus", 1000)]
    totals = result.totals
    assert totals["opening_balance"] == 55000
    assert (totals["recharge"], totals["bonus"], totals["consume"], totals["reversal"]) == (
        30000, 1000, -15345, 3000)
    assert totals["net"] == 18655 and totals["closing_balance"] == 73655
    assert result.entries[1].remark == "烫发" and result.entries[1].display_name == "安安"


def test_closing_of_a_period_to_today_is_the_cards_balance(app, history, clock):
    """Up to today, the closing balance is what the cards hold now."""
    shop, first, second = history
    today = clock.today()
    totals = shop.do(lambda: statements.totals(shop.customer_id, DAY, today))
    assert totals["closing_balance"] == shop.card(first).money + shop.card(second).money


def test_totals_reconcile_on_random_data(app, monkeypatch):
    """Random recharges, bonuses and consumptions over 60 days; for random periods the totals
    equal sums computed independently here, and opening + entries = closing."""
    shop = make_shop(app)
    rng = random.Random(20261127)
    card_ids = [shop.open_card(card_no=f"R-00{i}") for i in range(3)]
    start_day = datetime.datetime(2026, 1, 1, 9)
    for _ in range(90):
        moment = start_day + datetime.timedelta(days=rng.randrange(60), hours=rng.randrange(10))
        card_id = rng.choice(card_ids)
        with at(monkeypatch, moment):
            if rng.random() < 0.4 or shop.card(card_id).money < 2000:
                shop.do(lambda c=card_id: cards.recharge(shop.operator, c, key(),
                                                         rng.randrange(1000, 20000),
                                                         bonus=rng.choice((0, 0, 500))))
            else:
                shop.do(lambda c=card_id: cards.consume(shop.operator, c, key(),
                                                        rng.randrange(100, 2000)))
    every = shop.do(lambda: list(CardRecord.select()))
    for _ in range(12):
        a = datetime.date(2026, 1, 1) + datetime.timedelta(days=rng.randrange(60))
        b = a + datetime.timedelta(days=rng.randrange(30))
        totals = shop.do(lambda a=a, b=b: statements.totals(shop.customer_id, a, b))
        inside = [r for r in every if a <= r.created_at.date() <= b]
        before = [r for r in every if r.created_at.date() < a]
        assert totals["opening_balance"] == sum(r.amount for r in before)
        for kind in ("recharge", "bonus", "consume"):
            assert totals[kind] == sum(r.amount for r in inside if r.business_type == kind)
        assert totals["entries"] == len(inside)
        assert totals["opening_balance"] + sum(r.amount for r in inside) == totals["closing_balance"]


def test_long_periods_page_but_totals_cover_the_period(app, monkeypatch, clock):
    """120 entries: pages of 50; the totals are the whole period's."""
    shop = make_shop(app)
    card_id = shop.open_card(amount=50000, bonus=0)
    for i in range(119):
        with at(monkeypatch, datetime.datetime(2026, 2, 1, 8) + datetime.timedelta(minutes=i)):
            shop.do(lambda: cards.consume(shop.operator, card_id, key(), 100))
    result = shop.do(lambda: statements.statement(shop.customer_id, datetime.date(2026, 1, 1),
                                                  clock.today(), page=3))
    assert (result.count, result.pages, len(result.entries)) == (120, 3, 20)
    assert result.totals["consume"] == -11900


def _expected_preset(name, today):
    """The periods written out by hand: 今天, 本周 (from Monday), 本月, 上月."""
    monday = today - datetime.timedelta(days=today.weekday())
    first = today.replace(day=1)
    last_month_end = first - datetime.timedelta(days=1)
    return {"today": (today, today), "week": (monday, today), "month": (first, today),
            "last_month": (last_month_end.replace(day=1), last_month_end)}[name]


@pytest.mark.parametrize("preset", ["today", "week", "month", "last_month", None])
def test_presets_follow_the_apps_clock(app, client, api_token, clock, preset):
    """The period presets (and the default, this month) are computed from the app's clock,
    through the API as a page or report would ask."""
    headers = api_token("ann")
    query = f"?preset={preset}" if preset else ""
    body = client.get(f"/api/v1/stats{query}", headers=headers).get_json()
    start, end = _expected_preset(preset or "month", clock.today())
    assert (body["start"], body["end"]) == (start.isoformat(), end.isoformat())


def test_exports_carry_the_rows_and_totals(app, client, history, tmp_path):
    """The .xlsx (openpyxl) and the PDF (pdftotext) hold the statement's rows and totals; the
    PDF's first page renders Chinese (pdftoppm screenshot)."""
    shop = history[0]
    AuthActions(client).login("ann")
    query = "start=2026-03-02&end=2026-03-04"
    resp = client.get(f"/customers/{shop.customer_id}/statement.xlsx?{query}")
    assert resp.status_code == 200
    title = title_lines(resp.data)
    assert "客户对账单" in title[0] and "张三" in title[1]
    rows = report_rows(resp.data)
    header = rows.index(("时间", "卡号", "业务类型", "金额", "交易后余额", "支付方式", "折扣",
                         "操作员", "备注"))
    body = rows[header + 1:header + 7]
    assert [(r[1], r[2], float(r[3])) for r in body] == [
        ("S-0002", "充值", 200.0), ("S-0001", "消费", -123.45), ("S-0002", "消费", -30.0),
        ("S-0002", "冲正", 30.0), ("S-0001", "充值", 100.0), ("S-0001", "赠送", 10.0)]
    totals = {r[0]: float(r[3]) for r in rows[header + 8:] if r and r[0]}
    assert totals["期初余额"] == 550.0 and totals["期末余额"] == 736.55 and totals["消费"] == -153.45

    resp = client.get(f"/customers/{shop.customer_id}/statement.pdf?{query}")
    assert resp.status_code == 200 and resp.mimetype == "application/pdf"
    text = pdf_text(resp.data)
    for expected in ("客户对账单", "张三", "S-0001", "¥736.55", "¥550.00", "-¥123.45", "烫发"):
        assert expected in text, expected
    assert "第1/1页" in text.replace(" ", "")
    (tmp_path / "s.pdf").write_bytes(resp.data)
    subprocess.run(["pdftoppm", "-png", "-r", "60", "-f", "1", "-l", "1", str(tmp_path / "s.pdf"),
                    str(tmp_path / "page")], check=True)
    assert list(tmp_path.glob("page*.png"))


@pytest.mark.parametrize("query,message", [
    ("start=2026-03-05&end=2026-03-01", "结束日期不能早于开始日期"),
    ("start=2026-02-30", "开始日期格式不正确"),
    ("start=yesterday", "开始日期格式不正确"),
    ("start=2015-01-01&end=2026-01-01", "查询期间最长 5 年"),
])
def test_bad_periods(client, history, query, message):
    """Bad periods: a clear message and 422, on the page and in the API."""
    shop = history[0]
    AuthActions(client).login("ann")
    resp = client.get(f"/customers/{shop.customer_id}/statement?{query}")
    assert resp.status_code == 422 and message in resp.get_data(as_text=True)
    token = client.post("/api/v1/login", json={"username": "ann",
                                               "password": "correct-horse-9"}).get_json()["token"]
    resp = client.get(f"/api/v1/customers/{shop.customer_id}/statement?{query}",
                      headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 422 and message in resp.get_json()["error"]["message"]


def test_unknown_customer_and_api_contract(client, history):
    """An unknown customer is 404; the API's statement follows the contract."""
    shop = history[0]
    token = client.post("/api/v1/login", json={"username": "ann",
                                               "password": "correct-horse-9"}).get_json()["token"]
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/v1/customers/999/statement", headers=headers).status_code == 404
    body = client.get(f"/api/v1/customers/{shop.customer_id}/statement?start=2026-03-02"
                      "&end=2026-03-04", headers=headers).get_json()
    assert body["totals"] == {"recharge": "300.00", "bonus": "10.00", "consume": "153.45",
                              "reversal": "30.00", "refund": "0.00", "net": "186.55",
                              "opening": "550.00", "closing": "736.55"}
    first = body["entries"][0]
    assert first == {"time": "2026-03-02 09:00:00", "card_no": "S-0002",
                     "business_type": "recharge", "amount": "200.00", "balance": "200.00",
                     "operator": "安安", "remark": "", "payment_method": "cash"}
    assert client.get(f"/api/v1/customers/{shop.customer_id}/statement.xlsx",
                      headers=headers).status_code == 200


def test_statement_files_have_one_name_on_the_page_and_in_the_api(app, client, api_token):
    """The page called the file 对账单_1_…, the API statement-1-…; now both name the customer
    (characters a file system refuses replaced) and the period, Excel and PDF alike."""
    from urllib.parse import quote

    from crm.services import SYSTEM, customers

    customer = make_shop(app).do(lambda: customers.create_customer(
        SYSTEM, {"name": '王/小:二 "VIP"', "phone": "13900000001"}))
    headers = api_token("clerk")
    AuthActions(client).login("boss")
    period = "start=2026-11-01&end=2026-11-27"
    for extension in ("xlsx", "pdf"):
        expected = quote(f"对账单_王_小_二_VIP_{customer.customer_no}_2026-11-01_2026-11-27."
                         f"{extension}")
        page = client.get(f"/customers/{customer.id}/statement.{extension}?{period}")
        api = client.get(f"/api/v1/customers/{customer.id}/statement.{extension}?{period}",
                         headers=headers)
        for resp in (page, api):
            assert resp.status_code == 200
            assert resp.headers["Content-Disposition"].endswith(f"filename*=UTF-8''{expected}"), \
                resp.headers["Content-Disposition"]
