"""统计分析: the dashboard's figures and charts, and the daily closing (日结). Every aggregate is
computed by the database (GROUP BY), never by looping over rows in Python."""
import datetime
import logging
import threading
import time

from peewee import JOIN, SQL, Case, fn

from crm.clock import now
from crm.db import db
from crm.errors import NotFound
from crm.models import Card, CardRecord, ConsumeRecord, Customer, CustomerType, User
from crm.services import excel, ledger, statements, validate

log = logging.getLogger(__name__)


def _sum(condition, value=CardRecord.amount):
    return fn.COALESCE(fn.SUM(Case(None, [(condition, value)], 0)), 0)


def summary(start, end):
    """The period's key figures (fen and counts)."""
    since, until = statements.bounds(start, end)
    period = (CardRecord.created_at >= since) & (CardRecord.created_at < until)
    kind = CardRecord.business_type
    money = (CardRecord.select(
        _sum(kind == "recharge").alias("recharge"), _sum(kind == "bonus").alias("bonus"),
        _sum(kind == "consume").alias("consume"), _sum(kind == "reversal").alias("reversal"),
        _sum(kind == "refund").alias("refund"),
        fn.COUNT(fn.DISTINCT(CardRecord.customer)).alias("active_customers"))
        .where(period).dicts().get())
    consumed = (ConsumeRecord.select(
        fn.COALESCE(fn.SUM(ConsumeRecord.amount), 0).alias("net_consumption"),
        _sum(ConsumeRecord.amount > 0, 1).alias("sales"),
        _sum(ConsumeRecord.amount < 0, 1).alias("reversed_sales"))
        .where((ConsumeRecord.created_at >= since) & (ConsumeRecord.created_at < until))
        .dicts().get())
    # Purchases per customer counted as the period's visits are: a reversal (冲正) in the period
    # takes one back. Read from the covering index (created_at, customer_id, amount) alone.
    per_customer = (ConsumeRecord.select(ConsumeRecord.customer,
                                         fn.SUM(Case(None, [(ConsumeRecord.amount > 0, 1)], -1))
                                         .alias("n"))
                    .where((ConsumeRecord.created_at >= since) & (ConsumeRecord.created_at < until))
                    .group_by(ConsumeRecord.customer))
    buyers = (ConsumeRecord.select(fn.COALESCE(fn.SUM(Case(None, [(SQL("n >= 1"), 1)], 0)), 0)
                                   .alias("buyers"),
                                   fn.COALESCE(fn.SUM(Case(None, [(SQL("n >= 2"), 1)], 0)), 0)
                                   .alias("repeat"))
              .from_(per_customer.alias("x")).dicts().get())
    owed = Card.select(fn.COALESCE(fn.SUM(Card.money), 0).alias("outstanding"),
                       fn.COALESCE(fn.SUM(Card.paid_money), 0).alias("outstanding_paid"),
                       fn.COALESCE(fn.SUM(Card.bonus_money), 0).alias("outstanding_bonus")
                       ).dicts().get()
    new_customers = (Customer.select().where((Customer.created_at >= since)
                                             & (Customer.created_at < until)).count())
    visits = int(consumed["sales"]) - int(consumed["reversed_sales"])
    net = int(consumed["net_consumption"])
    result = {k: int(v) for k, v in {**money, **owed}.items()}
    result.update(
        total_recharge=result["recharge"], total_consume=net, bonus_given=result["bonus"],
        new_customers=new_customers, visits=visits,
        average_per_visit=round(net / visits) if visits > 0 else 0,
        buyers=int(buyers["buyers"]), repeat_buyers=int(buyers["repeat"]),
        repurchase_rate=(int(buyers["repeat"]) / int(buyers["buyers"])) if buyers["buyers"] else 0.0)
    return result


def daily(start, end):
    """Recharge and net consumption per day of the period (every day listed, zero or not)."""
    since, until = statements.bounds(start, end)
    day = fn.DATE(CardRecord.created_at)
    recharged = (CardRecord.select(day, fn.SUM(CardRecord.amount))
                 .where((CardRecord.created_at >= since) & (CardRecord.created_at < until)
                        & (CardRecord.business_type == "recharge"))
                 .group_by(day).tuples())
    sold_day = fn.DATE(ConsumeRecord.created_at)
    consumed = (ConsumeRecord.select(sold_day, fn.SUM(ConsumeRecord.amount))
                .where((ConsumeRecord.created_at >= since) & (ConsumeRecord.created_at < until))
                .group_by(sold_day).tuples())
    recharge = {str(d)[:10]: int(v) for d, v in recharged}
    consume = {str(d)[:10]: int(v) for d, v in consumed}
    days, current = [], start
    while current <= end:
        key = current.isoformat()
        days.append({"day": key, "recharge": recharge.get(key, 0),
                     "consume": consume.get(key, 0)})
        current += datetime.timedelta(days=1)
    return days


def by_customer_type(start, end):
    """Net consumption per customer type in the period, biggest first (summed per customer from
    the covering index first, so only the period's customers are looked up)."""
    since, until = statements.bounds(start, end)
    per_customer = (ConsumeRecord.select(ConsumeRecord.customer,
                                         fn.SUM(ConsumeRecord.amount).alias("spent"))
                    .where((ConsumeRecord.created_at >= since) & (ConsumeRecord.created_at < until))
                    .group_by(ConsumeRecord.customer).alias("spent_by"))
    total = fn.SUM(per_customer.c.spent)
    rows = (Customer.select(CustomerType.name, total.alias("amount"))
            .join(per_customer, on=(Customer.id == per_customer.c.customer_id))
            .switch(Customer)
            .join(CustomerType, JOIN.LEFT_OUTER, on=(Customer.type == CustomerType.id))
            .group_by(CustomerType.name).order_by(total.desc()).tuples())
    return [{"type": name or "未分类", "amount": int(amount)} for name, amount in rows]


def top_customers(start, end, limit=10):
    """The customers who consumed most in the period, with name and phone."""
    since, until = statements.bounds(start, end)
    total = fn.SUM(ConsumeRecord.amount)
    top = (ConsumeRecord.select(ConsumeRecord.customer, total.alias("amount"))
           .where((ConsumeRecord.created_at >= since) & (ConsumeRecord.created_at < until))
           .group_by(ConsumeRecord.customer).order_by(total.desc()).limit(limit).alias("top"))
    rows = (Customer.select(Customer.id, Customer.name, Customer.phone, top.c.amount)
            .join(top, on=(Customer.id == top.c.customer_id))
            .order_by(top.c.amount.desc()).tuples())
    return [{"customer_id": i, "name": n, "phone": p, "amount": int(a)} for i, n, p, a in rows]


ACTIVITY = (("30", "30 天内来过"), ("60", "31–60 天"), ("90", "61–90 天"), ("dormant", "超过 90 天或从未"))


def activity(today=None):
    """Customers by their last visit: within 30 / 60 / 90 days, or dormant (never or longer)."""
    today = today or now()
    edges = {n: today - datetime.timedelta(days=n) for n in (30, 60, 90)}
    last = Customer.last_visit_at
    bucket = Case(None, [(last >= edges[30], "30"), (last >= edges[60], "60"),
                         (last >= edges[90], "90")], "dormant")
    counts = dict(Customer.select(bucket.alias("bucket"), fn.COUNT(SQL("*")))
                  .where(Customer.archived == False)  # noqa: E712 — peewee expression
                  .group_by(bucket).tuples())
    return [{"bucket": key, "label": label, "customers": int(counts.get(key, 0))}
            for key, label in ACTIVITY]


class _Recent:
    """The dashboard's figures per period, kept for STATS_CACHE_SECONDS. They aggregate the whole
    ledger and every card and customer (0.2–0.4 s at 100,000 customers / 1,000,000 entries);
    with 50 staff at work, recomputing them for every visit took the database from everyone
    else. The first visit of a period computes them (others asking at the same time wait for that
    answer, not compute it again); figures older than the time are never shown: the first visit
    after them computes anew (a stale answer served while a thread refreshed it could be hours
    old after a quiet spell). The page says how old they are. The API and the exports never use
    them: they answer with every movement committed before the request."""

    seconds = 30.0
    guard = threading.Lock()
    entries = {}  # (database, start, end) -> (expires, figures)
    locks = {}


def configure(config):
    _Recent.seconds = float(config.get("STATS_CACHE_SECONDS", 30))
    forget()


def forget():
    """Drop every kept figure (after a restore: the next visit computes from the restored data).
    Other server processes keep theirs until they expire (STATS_CACHE_SECONDS)."""
    with _Recent.guard:
        _Recent.entries.clear()


def _figures(start, end):
    return {"summary": summary(start, end), "daily": daily(start, end),
            "by_type": by_customer_type(start, end), "top": top_customers(start, end),
            "activity": activity(), "as_of": now().strftime("%Y-%m-%d %H:%M:%S")}


def _store(key, figures, stamp):
    """Keep a period's figures, computed from what was committed at `stamp`; drop those that
    expired (every date range a user picks is a key: without this the memory would only grow)."""
    with _Recent.guard:
        for old in [k for k, (expires, _) in _Recent.entries.items()
                    if expires < time.monotonic()]:
            del _Recent.entries[old]
            _Recent.locks.pop(old, None)
        _Recent.entries[key] = (stamp + _Recent.seconds, figures)


def _fresh(key):
    """The kept figures of a period while they are within the time, else None."""
    found = _Recent.entries.get(key)
    return found[1] if found and found[0] > time.monotonic() else None


def warm_up(database, delay=2.0):
    """Compute this month's dashboard figures in the background shortly after the server starts,
    so that the first staff to open the dashboard (often several at once, after a restart) find
    them ready instead of all waiting for the first computation. Returns the thread."""

    def run():
        time.sleep(delay)
        try:
            with database.connection_context():
                dashboard(*statements.parse_period())
        except Exception:  # noqa: BLE001 — the first visit computes them instead
            log.exception("dashboard figures could not be computed ahead")

    thread = threading.Thread(target=run, name="stats-warm-up", daemon=True)
    thread.start()
    return thread


def current(start, end):
    """Everything the dashboard shows for a period, from every movement committed before the
    call (the API and the exports)."""
    return _figures(start, end)


def dashboard(start, end):
    """Everything the dashboard page shows for a period, never older than STATS_CACHE_SECONDS:
    kept figures within the time, else computed now (once, however many ask at that moment)."""
    if _Recent.seconds <= 0:
        return _figures(start, end)
    key = (id(db.obj), start, end)
    with _Recent.guard:
        found = _fresh(key)
        if found is not None:
            return found
        lock = _Recent.locks.setdefault(key, threading.Lock())
    with lock:
        with _Recent.guard:
            found = _fresh(key)
        if found is not None:
            return found
        stamp = time.monotonic()
        figures = _figures(start, end)
        _store(key, figures, stamp)
        return figures


DAILY_UP_TO = 62  # days: a longer period's chart goes by week
WEEKLY_UP_TO = 366  # days: a longer one by month


def chart_unit(start, end):
    """How the daily chart of this period reads best (issue 19.10): 日 up to DAILY_UP_TO days,
    周 (from Monday) up to a year, 月 beyond."""
    span = (end - start).days + 1
    return "日" if span <= DAILY_UP_TO else "周" if span <= WEEKLY_UP_TO else "月"


def grouped(days, start, end):
    """The daily figures by chart_unit(start, end). Returns (unit, rows of {day: the bucket's
    first day, label, recharge, consume})."""
    unit = chart_unit(start, end)
    first = {"日": lambda d: d, "周": lambda d: d - datetime.timedelta(days=d.weekday()),
             "月": lambda d: d.replace(day=1)}[unit]
    buckets = {}
    for row in days:  # the first bucket starts with the period, not before it
        key = max(first(datetime.date.fromisoformat(row["day"])), start)
        bucket = buckets.setdefault(key, {"recharge": 0, "consume": 0})
        bucket["recharge"] += row["recharge"]
        bucket["consume"] += row["consume"]
    label = {"日": lambda d: d.strftime("%m-%d"), "周": lambda d: d.strftime("%m-%d") + " 周",
             "月": lambda d: d.strftime("%Y-%m")}[unit]
    return unit, [{"day": key.isoformat(), "label": label(key), **figures}
                  for key, figures in sorted(buckets.items())]


# The dashboard's charts: key → (title, columns, rows of the dashboard's data and period;
# money in fen). The daily chart's title names its unit: 每日 / 每周 / 每月.
_MONEY = 14
CHARTS = {
    "daily": ("每日充值与消费", (excel.Column("日期", 12, "date"),
                                 excel.Column("充值", _MONEY, "money"),
                                 excel.Column("消费", _MONEY, "money")),
              lambda d, start, end: [(r["day"], r["recharge"], r["consume"])
                                     for r in grouped(d["daily"], start, end)[1]]),
    "by_type": ("各客户类型消费", (excel.Column("客户类型", 16), excel.Column("消费", _MONEY, "money")),
                lambda d, *_: [(r["type"], r["amount"]) for r in d["by_type"]]),
    "top": ("消费前十的客户", (excel.Column("客户", 14), excel.Column("电话", 14),
                               excel.Column("消费", _MONEY, "money")),
            lambda d, *_: [(r["name"], r["phone"], r["amount"]) for r in d["top"]]),
    "activity": ("客户活跃度", (excel.Column("最近到店", 16), excel.Column("客户数", 10, "count")),
                 lambda d, *_: [(r["label"], r["customers"]) for r in d["activity"]]),
}


def chart_xlsx(chart, start, end, shop_name=""):
    """One chart's data for the period as an .xlsx: (file name, bytes); 404 for no such chart."""
    if chart not in CHARTS:
        raise NotFound("没有这个图表", code="unknown_chart")
    _, columns, rows = CHARTS[chart]
    title = chart_title(chart, start, end)
    facts = [excel.period_line(start, end), excel.made_at()]
    unit = chart_unit(start, end)
    if chart == "daily" and unit != "日":
        facts.insert(1, f"每{unit}一行，日期为该{unit}的第一天（每周从周一算起）")
    data = excel.report(title, f"{shop_name} · {title}".strip(" ·"), facts, columns,
                        rows(current(start, end), start, end))
    return f"{title}_{start}_{end}.xlsx", data


def chart_title(chart, start, end):
    """A chart's title for the period: the daily chart says 每日, 每周 or 每月."""
    return f"每{chart_unit(start, end)}充值与消费" if chart == "daily" else CHARTS[chart][0]


# --- 日结 / 交班 --------------------------------------------------------------------------------

def parse_day(value):
    """A day as YYYY-MM-DD; today when not given."""
    if not value:
        return now().date()
    return validate.iso_date(value, "日期", "day")


def closing(day, operator_id=None):
    """The day's closing for the shop or one operator: recharges and refunds by payment method,
    bonuses, consumptions, reversals, and the cash the till should hold."""
    since, until = statements.bounds(day, day)
    where = (CardRecord.created_at >= since) & (CardRecord.created_at < until)
    if operator_id:
        where &= CardRecord.operator == operator_id
    original = CardRecord.alias("original")
    # A reversal counts against the payment method of the entry it reverses.
    method = fn.COALESCE(fn.NULLIF(CardRecord.payment_method, ""), original.payment_method, "")
    rows = (CardRecord.select(CardRecord.business_type, original.business_type, method,
                              fn.COUNT(SQL("*")), fn.SUM(CardRecord.amount))
            .join(original, JOIN.LEFT_OUTER, on=(CardRecord.reverses == original.id))
            .where(where)
            .group_by(CardRecord.business_type, original.business_type, method).tuples())
    lines = [{"business_type": kind, "reverses_type": reversed_kind, "payment_method": pay or "",
              "count": int(count), "amount": int(amount)}
             for kind, reversed_kind, pay, count, amount in rows]
    money_in = {m: 0 for m in ledger.PAYMENT_METHODS}
    for line in lines:
        takes_money = line["business_type"] in ("recharge", "refund") or (
            line["business_type"] == "reversal" and line["reverses_type"] == "recharge")
        if takes_money and line["payment_method"] in money_in:
            money_in[line["payment_method"]] += line["amount"]
    totals = {}
    for line in lines:
        key = line["business_type"]
        if key == "reversal":
            key = f"reversal_{line['reverses_type']}"
        totals[key] = totals.get(key, 0) + line["amount"]
    operator = User.get_or_none(User.id == operator_id) if operator_id else None
    return {"day": day, "operator": operator, "lines": lines, "money_in": money_in,
            "cash": money_in["cash"], "totals": totals}


CLOSING_COLUMNS = (excel.Column("业务", 16), excel.Column("支付方式", 10),
                   excel.Column("笔数", 8, "count"), excel.Column("金额", 14, "money"))


def closing_xlsx(day, operator_id=None, shop_name=""):
    """The day's closing as an .xlsx: (file name, bytes) — every line with its business type
    (a reversal says what it reverses), payment method, count and amount; then the money taken
    in by payment method, the cash the till should hold, and lines to sign at the hand-over."""
    result = closing(day, operator_id)
    rows = [(ledger.BUSINESS_TYPES.get(line["business_type"], line["business_type"])
             + (f"（{ledger.BUSINESS_TYPES.get(line['reverses_type'], '')}）"
                if line["reverses_type"] else ""),
             ledger.PAYMENT_METHODS.get(line["payment_method"], ""), line["count"],
             line["amount"]) for line in result["lines"]]
    after = [(f"{label}收款合计", label, None, result["money_in"][method])
             for method, label in ledger.PAYMENT_METHODS.items()]
    after += [("钱箱应有现金", "现金", None, result["cash"]), (),
              ("交班人签名：", "", "接班人签名："), ("日期：", "", "时间：")]
    who = f"操作员：{result['operator'].name}" if result["operator"] else "操作员：全部"
    data = excel.report(f"日结 {day}", f"{shop_name} · 日结交班表".strip(" ·"),
                        [excel.period_line(day, day), who, excel.made_at()], CLOSING_COLUMNS,
                        rows, after=after)
    return f"日结_{day}.xlsx", data
