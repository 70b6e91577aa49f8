"""Charts (issue 19.10): the daily chart of a long period groups by week or month by itself (on
the page and in its Excel); every bar of the top-ten chart carries its customer and amount."""
import datetime

import pytest
from playwright.sync_api import expect

from crm import clock
from crm.services import cards, customers, stats
from tests.conftest import PASSWORD
from tests.ledger_helpers import key, make_shop
from tests.test_browser import log_in
from tests.xlsx_helpers import report_rows, title_lines


def _days(start, count):
    return [{"day": (start + datetime.timedelta(days=n)).isoformat(), "recharge": 100 * n,
             "consume": n} for n in range(count)]


def test_a_long_period_groups_by_week_then_by_month():
    start = datetime.date(2026, 1, 1)  # a Thursday
    unit, rows = stats.grouped(_days(start, 31), start, start + datetime.timedelta(days=30))
    assert unit == "日" and len(rows) == 31 and rows[0]["label"] == "01-01"
    end = start + datetime.timedelta(days=89)
    unit, rows = stats.grouped(_days(start, 90), start, end)
    assert unit == "周" and rows[0]["day"] == "2026-01-01"  # the period's first day, then Mondays
    assert all(datetime.date.fromisoformat(r["day"]).weekday() == 0 for r in rows[1:])
    assert sum(r["recharge"] for r in rows) == sum(100 * n for n in range(90))
    end = start + datetime.timedelta(days=399)
    unit, rows = stats.grouped(_days(start, 400), start, end)
    assert unit == "月" and [r["label"] for r in rows[:2]] == ["2026-01", "2026-02"]
    assert sum(r["consume"] for r in rows) == sum(range(400))


def test_the_dashboard_and_its_excel_say_each_week(app, client, auth):
    shop = make_shop(app)
    card_id = shop.open_card(amount=10000)
    shop.do(lambda: cards.consume(shop.operator, card_id, key(), 500))
    end = clock.today()
    start = end - datetime.timedelta(days=89)
    auth.login("ann", PASSWORD)
    page = client.get(f"/stats?start={start}&end={end}").get_data(as_text=True)
    assert "每周充值与消费" in page and "每日充值与消费" not in page
    resp = client.get(f"/stats/daily.xlsx?start={start}&end={end}")
    assert "每周充值与消费" in title_lines(resp.data)[0]
    rows = report_rows(resp.data)[1:]
    assert 13 <= len(rows) <= 14 and all(r[0].weekday() == 0 for r in rows[1:])
    assert rows[0][0].date() == start
    assert sum(float(r[1]) for r in rows) == 100.0 and sum(float(r[2]) for r in rows) == 5.0


@pytest.mark.backends("sqlite")
def test_every_bar_of_the_top_ten_is_labelled_in_a_browser(app, page):
    shop = make_shop(app)

    def twelve_buyers():
        for n in range(12):
            buyer = customers.create_customer(shop.operator, {"name": f"买家{n:02d}",
                                                              "phone": f"1371234{n:04d}"})
            card = cards.open_card(shop.operator, buyer.id, key(), amount=100000).card_id
            cards.consume(shop.operator, card, key(), 1000 * (n + 1))

    shop.do(twelve_buyers)
    log_in(page, "ann")
    page.goto("/stats")
    expect(page.locator("#chart-top")).to_have_attribute("data-drawn", "1")
    drawn = page.evaluate("""() => {
      const c = Chart.getChart(document.getElementById("chart-top"));
      return {ticks: c.scales.y.ticks.length, labels: c.data.labels.length,
              plugins: c.config.plugins.map(p => p.id), first: c.data.labels[0]};
    }""")
    assert drawn == {"ticks": 10, "labels": 10, "plugins": ["barValues"], "first": "买家11"}


def test_a_week_that_began_before_the_period_starts_with_the_period():
    start = datetime.date(2026, 1, 7)  # a Wednesday
    end = start + datetime.timedelta(days=89)
    _, rows = stats.grouped(_days(start, 90), start, end)
    assert rows[0]["day"] == "2026-01-07" and rows[1]["day"] == "2026-01-12"
