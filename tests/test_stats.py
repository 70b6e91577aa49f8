"""统计分析 and 日结: figures equal sums computed independently on a known data set; charts
render offline in the browser; the closing adds up."""
import datetime
import os

import pytest
from playwright.sync_api import expect

from crm import clock as crm_clock
from crm.models import Card, ConsumeRecord, Customer
from crm.services import cards, customer_types, customers, statements, stats
from tests.conftest import PASSWORD, AuthActions
from tests.ledger_helpers import key, make_shop
from tests.xlsx_helpers import report_rows


@pytest.fixture
def known(app):
    """Three customers of two types; recharges (cash, wechat), bonus, consumptions, a reversal."""
    shop = make_shop(app)

    def build():
        vip = customer_types.create_type(shop.admin, {"name": "VIP客户"})
        two = customers.create_customer(shop.operator, {"name": "李四", "phone": "13900000002",
                                                        "type_id": vip.id})
        three = customers.create_customer(shop.operator, {"name": "王五", "phone": "13900000003"})
        return two.id, three.id

    two, three = shop.do(build)
    a = shop.open_card(amount=30000, bonus=3000)                          # 张三, cash
    b = shop.open_card(amount=20000, bonus=0, customer_id=two, payment_method="wechat")
    c = shop.open_card(customer_id=three)                                  # no money yet
    op = shop.operator
    shop.do(lambda: cards.consume(op, a, key(), 5000))
    shop.do(lambda: cards.consume(op, a, key(), 2500))
    wrong = shop.do(lambda: cards.consume(op, b, key(), 1000))
    shop.do(lambda: cards.reverse(shop.admin, wrong.record_id, key(), "收错"))
    shop.do(lambda: cards.consume(op, b, key(), 4000))
    shop.do(lambda: cards.recharge(op, c, key(), 10000, bonus=0, payment_method="cash"))
    return shop, (a, b, c)


def test_dashboard_figures_equal_independent_sums(app, clock, known):
    """Every figure of the dashboard equals what this test adds up from the rows."""
    today = clock.today()
    shop, _ = known
    s = shop.do(lambda: stats.summary(today, today))
    assert s["total_recharge"] == 30000 + 20000 + 10000
    assert s["bonus_given"] == 3000
    assert s["total_consume"] == 5000 + 2500 + 4000  # the reversed 10.00 does not count
    assert s["outstanding"] == shop.do(lambda: sum(c.money for c in Card.select()))
    assert s["outstanding"] == 63000 - 11500 and s["outstanding_bonus"] == 3000
    assert (s["new_customers"], s["active_customers"]) == (3, 3)
    assert s["visits"] == 3 and s["average_per_visit"] == round(11500 / 3)
    # 张三 bought twice; 李四 twice, but one was reversed: one purchase stands.
    assert (s["buyers"], s["repeat_buyers"]) == (2, 1) and s["repurchase_rate"] == 0.5
    net = shop.do(lambda: sum(r.amount for r in ConsumeRecord.select()))
    assert net == s["total_consume"]


def test_charts_data(app, clock, known):
    """Daily, by type, top customers and activity, on the same known data."""
    today = clock.today()
    shop, _ = known
    data = shop.do(lambda: stats.dashboard(today - datetime.timedelta(days=2), today))
    assert [d["day"] for d in data["daily"]] == [
        (today - datetime.timedelta(days=n)).isoformat() for n in (2, 1, 0)]
    assert data["daily"][-1] == {"day": today.isoformat(), "recharge": 60000, "consume": 11500}
    assert data["daily"][0]["recharge"] == 0
    assert data["by_type"] == [{"type": "未分类", "amount": 7500}, {"type": "VIP客户", "amount": 4000}]
    assert [(t["name"], t["amount"]) for t in data["top"]] == [("张三", 7500), ("李四", 4000)]
    assert data["activity"][0]["customers"] == 3 and data["activity"][3]["customers"] == 0

    def age_one():
        Customer.update(last_visit_at=clock.now() - datetime.timedelta(days=45)).where(
            Customer.name == "王五").execute()
        Customer.update(last_visit_at=None).where(Customer.name == "李四").execute()

    shop.do(age_one)
    counts = [a["customers"] for a in shop.do(stats.activity)]
    assert counts == [1, 1, 0, 1]


def test_closing_adds_up(app, clock, known):
    """日结: cash and wechat takings; the cash the till should hold; one operator's share."""
    today = clock.today()
    shop, _ = known
    result = shop.do(lambda: stats.closing(today))
    assert result["money_in"]["cash"] == 40000 and result["money_in"]["wechat"] == 20000
    assert result["cash"] == 40000
    assert result["totals"]["reversal_consume"] == 1000 and result["totals"]["consume"] == -12500
    mine = shop.do(lambda: stats.closing(today, shop.admin.user.id))
    assert mine["money_in"]["cash"] == 0 and mine["totals"] == {"reversal_consume": 1000}


def test_reversed_cash_recharge_leaves_the_till(app, clock):
    """A reversed cash recharge is money handed back: the till's cash goes down by it."""
    today = clock.today()
    shop = make_shop(app)
    card_id = shop.open_card(amount=10000, bonus=0)
    first = shop.do(lambda: cards.recharge(shop.operator, card_id, key(), 5000, bonus=0))
    shop.do(lambda: cards.reverse(shop.admin, first.record_id, key(), "充错"))
    assert shop.do(lambda: stats.closing(today))["cash"] == 10000


def test_pages_and_exports(client, known):
    """The dashboard, a chart's Excel, the closing page and its Excel; bad input is a 4xx."""
    AuthActions(client).login("ann")
    html = client.get("/stats").get_data(as_text=True)
    assert "¥600.00" in html and "dashboard-data" in html and "50.0%" in html
    resp = client.get("/stats/top.xlsx")
    rows = report_rows(resp.data)
    assert rows[0] == ("客户", "电话", "消费") and rows[1][0] == "张三" and float(rows[1][2]) == 75.0
    assert client.get("/stats/nothing.xlsx").status_code == 404
    html = client.get("/closing").get_data(as_text=True)
    assert "¥400.00" in html
    resp = client.get("/closing.xlsx")
    cash = next(r for r in report_rows(resp.data) if r and r[0] == "钱箱应有现金")
    assert float(cash[3]) == 400.0
    resp = client.get("/closing?day=2026-13-01")
    assert resp.status_code == 422 and "日期格式不正确" in resp.get_data(as_text=True)
    resp = client.get("/stats?start=2026-02-01&end=2026-01-01")
    assert resp.status_code == 422


def test_stats_api(client, known):
    """GET /api/v1/stats answers the contract's fields in yuan."""
    token = client.post("/api/v1/login", json={"username": "ann",
                                               "password": PASSWORD}).get_json()["token"]
    body = client.get("/api/v1/stats", headers={"Authorization": f"Bearer {token}"}).get_json()
    assert (body["total_recharge"], body["total_consume"], body["outstanding_balance"]) == (
        "600.00", "115.00", "515.00")
    assert (body["active_customers"], body["new_customers"]) == (3, 3)
    closing = client.get("/api/v1/closing", headers={"Authorization": f"Bearer {token}"}).get_json()
    assert closing["cash"] == "400.00"


@pytest.mark.backends("sqlite")
def test_charts_render_offline(page, known, tmp_path):
    """With every request off this machine blocked, all four charts draw (vendored Chart.js)."""
    page.route(lambda url: not url.startswith(("http://127.0.0.1", "http://localhost")),
               lambda route: route.abort())
    page.goto("/login")
    page.fill("#username", "ann")
    page.fill("#password", PASSWORD)
    page.press("#password", "Enter")
    page.goto("/stats")
    for chart in ("daily", "by_type", "top", "activity"):
        expect(page.locator(f"#chart-{chart}")).to_have_attribute("data-drawn", "1")
    page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
    if os.environ.get("CRM_KEEP_SCREENSHOTS"):
        page.screenshot(path=os.environ["CRM_KEEP_SCREENSHOTS"] + "/dashboard.png", full_page=True)
    assert (tmp_path / "dashboard.png").stat().st_size > 20000


def test_dashboard_figures_are_reused_for_the_cache_time(app):
    """With STATS_CACHE_SECONDS set, a second look within the time reuses the figures (a sale
    in between does not show yet, and the page says when they were computed); after the time the
    next look computes anew — figures older than the time are never shown; 50 threads asking at
    once for a period not yet computed compute it once."""
    import threading
    import time

    shop = make_shop(app)
    card_id = shop.open_card(amount=10000, bonus=0)
    today = crm_clock.today()
    try:
        # 1.5 s, not less: a slow or busy machine (two test workers on two cores) must not let
        # the cache lapse between the first look and the second.
        stats.configure({"STATS_CACHE_SECONDS": 1.5})
        first = shop.do(lambda: stats.dashboard(today, today))
        shop.do(lambda: cards.consume(shop.operator, card_id, key(), 500))
        assert shop.do(lambda: stats.dashboard(today, today)) is first
        time.sleep(1.6)
        # Expired: this visit computes (a quiet spell must not show stale figures).
        fresh = shop.do(lambda: stats.dashboard(today, today))
        assert fresh is not first
        assert fresh["summary"]["total_consume"] == first["summary"]["total_consume"] + 500
        assert fresh["as_of"] >= first["as_of"]

        stats.configure({"STATS_CACHE_SECONDS": 30})
        computed, real = [], stats._figures

        def counting(start, end):
            computed.append(1)
            time.sleep(0.2)  # a slow computation: the others must wait for it, not repeat it
            return real(start, end)

        stats._figures = counting
        answers = []
        threads = [threading.Thread(target=lambda: answers.append(
            shop.do(lambda: stats.dashboard(today, today)))) for _ in range(50)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(computed) == 1 and len(answers) == 50
        assert all(a is answers[0] for a in answers)
    finally:
        stats._figures = real if "real" in locals() else stats._figures
        stats.configure({"STATS_CACHE_SECONDS": 0})


def test_warm_up_computes_this_months_figures_ahead(app):
    """After the server starts, this month's dashboard figures are computed in the background:
    the first visit gets them without computing."""
    shop = make_shop(app)
    shop.open_card(amount=10000, bonus=0)
    real = stats._figures
    try:
        stats.configure({"STATS_CACHE_SECONDS": 30})
        stats.warm_up(app.extensions["crm_db"], delay=0).join(timeout=30)
        computed = []
        stats._figures = lambda start, end: computed.append(1) or real(start, end)
        figures = shop.do(lambda: stats.dashboard(*statements.parse_period()))
        assert computed == [] and figures["summary"]["total_recharge"] == 10000
    finally:
        stats._figures = real
        stats.configure({"STATS_CACHE_SECONDS": 0})


def test_a_restore_drops_the_kept_figures(app, clock):
    """Figures kept for the cache time are dropped by a restore: the next look shows the
    restored data, not the figures from before it."""
    today = clock.today()
    from pathlib import Path

    from crm.services import backups

    shop = make_shop(app)
    shop.open_card(amount=10000, bonus=0)
    folder = Path(app.config["BACKUP_DIR"])
    made = shop.do(lambda: backups.create(folder, "manual", "店", None))
    shop.open_card(amount=5000, bonus=0)  # after the backup: the restore takes it away
    try:
        stats.configure({"STATS_CACHE_SECONDS": 30})
        before = shop.do(lambda: stats.dashboard(today, today))
        assert before["summary"]["total_recharge"] == 15000
        shop.do(lambda: backups.restore(folder, made["name"], shop_name="店"))
        after = shop.do(lambda: stats.dashboard(today, today))
        assert after["summary"]["total_recharge"] == 10000
    finally:
        stats.configure({"STATS_CACHE_SECONDS": 0})


def test_the_apis_figures_are_current(app, client, clock):
    """With the dashboard's cache on (30 s), a recharge answered 201 is in /api/v1/stats, in the
    chart export and in /api/v1/closing at once; the dashboard page may show its labelled,
    kept figures within the time, never older ones."""
    import time
    import uuid

    shop = make_shop(app)
    card_id = shop.open_card(amount=10000, bonus=0)
    token = client.post("/api/v1/login", json={"username": "ann", "password": PASSWORD}
                        ).get_json()["token"]
    headers = {"Authorization": f"Bearer {token}"}
    try:
        stats.configure({"STATS_CACHE_SECONDS": 30})
        assert client.get("/api/v1/stats", headers=headers).get_json()["total_recharge"] == "100.00"
        AuthActions(client).login("ann")
        assert "¥100.00" in client.get("/stats").get_data(as_text=True)  # kept for 30 s now
        resp = client.post(f"/api/v1/cards/{card_id}/recharge", json={"amount": "23.45"},
                           headers={**headers, "Idempotency-Key": uuid.uuid4().hex})
        assert resp.status_code == 201
        assert client.get("/api/v1/stats", headers=headers).get_json()["total_recharge"] == "123.45"
        assert client.get("/api/v1/closing", headers=headers).get_json()["money_in"]["cash"] \
            == "123.45"
        today = clock.today().isoformat()
        sheet = client.get(f"/api/v1/stats/daily.xlsx?start={today}&end={today}", headers=headers)
        rows = report_rows(sheet.data)
        assert (today, 123.45, 0) in [(r[0].date().isoformat(), float(r[1]), float(r[2]))
                                      for r in rows[1:]]
        stats.configure({"STATS_CACHE_SECONDS": 0.5})
        client.get("/stats")
        time.sleep(0.6)  # a quiet spell longer than the time: the next look computes
        shop.do(lambda: cards.recharge(shop.operator, card_id, key(), 100, bonus=0))
        assert "¥124.45" in client.get("/stats").get_data(as_text=True)
    finally:
        stats.configure({"STATS_CACHE_SECONDS": 0})
