"""对账单: every entry of all of a customer's cards in a period, with totals that reconcile
(opening + entries = closing). The seed's joint query over t_card_record and t_consume_record."""
import datetime
from dataclasses import dataclass

from peewee import JOIN, Case, fn

from crm import clock
from crm.errors import ValidationError
from crm.models import Card, CardRecord, ConsumeRecord, User
from crm.services import customers, paging, validate

MAX_DAYS = 5 * 366 + 1  # a period of at most five years
PER_PAGE = 50
PRESETS = {"today": "今天", "week": "本周", "month": "本月", "last_month": "上月"}
# A statement also offers the customer's whole history (issue 19.7).
STATEMENT_PRESETS = {**PRESETS, "all": "全部（开卡以来）"}
TOTAL_TYPES = ("opening", "recharge", "bonus", "consume", "reversal", "refund", "bonus_void",
               "transfer_in", "transfer_out")


def preset_period(name, today=None):
    """(start, end) dates of a named period: 今天, 本周 (Monday on), 本月, 上月."""
    today = today or clock.today()
    if name == "today":
        return today, today
    if name == "week":
        return today - datetime.timedelta(days=today.weekday()), today
    if name == "last_month":
        last = today.replace(day=1) - datetime.timedelta(days=1)
        return last.replace(day=1), last
    return today.replace(day=1), today  # this month, the default


def parse_period(start=None, end=None, preset=None, today=None):
    """The period asked for: a preset, or start/end as YYYY-MM-DD (either may be left out: this
    month). Refuses bad dates, an end before the start and periods over five years."""
    default_start, default_end = preset_period(preset or "month", today)
    start = validate.iso_date(start, "开始日期", "start") if start else default_start
    end = validate.iso_date(end, "结束日期", "end") if end else (
        default_end if not start or start <= default_end else start)
    if end < start:
        raise ValidationError("结束日期不能早于开始日期", code="invalid_period", field="end")
    if (end - start).days + 1 > MAX_DAYS:
        raise ValidationError("查询期间最长 5 年，请缩短日期范围", code="period_too_long", field="start")
    return start, end


def customer_period(customer_id, start=None, end=None, preset=None, today=None):
    """The period of a customer's statement: as parse_period, or preset "all" — from the day the
    customer's first card was opened to today, however long (one customer's entries, read
    through their own index; no five-year cap)."""
    if preset != "all":
        return parse_period(start, end, preset, today)
    today = today or clock.today()
    first = Card.select(fn.MIN(Card.created_at)).where(Card.customer == customer_id).scalar()
    if isinstance(first, str):  # SQLite hands aggregates back as text
        first = datetime.datetime.fromisoformat(first)
    return min(first.date(), today) if first else today, today


def bounds(start, end):
    """The period as [from, to) datetimes: whole days, end day included."""
    return (datetime.datetime.combine(start, datetime.time()),
            datetime.datetime.combine(end + datetime.timedelta(days=1), datetime.time()))


@dataclass
class Statement:
    """One customer's statement for a period: a page of entries and the period's totals."""

    customer: object
    start: datetime.date
    end: datetime.date
    entries: list
    totals: dict
    count: int
    page: int
    per_page: int

    @property
    def pages(self):
        """How many pages the period's entries fill."""
        return paging(self.count, 1, self.per_page)[1]


def entries_query(customer_id, start, end):
    """Every entry of the customer's cards in the period, in time order, with card number,
    operator and (for consumptions) the consume record's original amount and discount."""
    since, until = bounds(start, end)
    return (CardRecord
            .select(CardRecord.id, CardRecord.created_at, Card.card_no, CardRecord.business_type,
                    CardRecord.amount, CardRecord.balance_after, CardRecord.payment_method,
                    CardRecord.remark, CardRecord.reverses, User.username, User.display_name,
                    ConsumeRecord.original_amount, ConsumeRecord.discount)
            .join(Card, on=(CardRecord.card == Card.id))
            .switch(CardRecord).join(User, on=(CardRecord.operator == User.id))
            .switch(CardRecord).join(ConsumeRecord, JOIN.LEFT_OUTER,
                                     on=(ConsumeRecord.card_record == CardRecord.id))
            .where((CardRecord.customer == customer_id) & (CardRecord.created_at >= since)
                   & (CardRecord.created_at < until))
            .order_by(CardRecord.created_at, CardRecord.id))


def totals(customer_id, start, end):
    """The period's totals in one query: per business type, the opening balance (all entries
    before the start) and so the closing balance; all in fen, signed as the entries are."""
    since, until = bounds(start, end)
    in_period = CardRecord.created_at >= since
    sums = [fn.COALESCE(fn.SUM(Case(None, [(~in_period, CardRecord.amount)], 0)), 0)
            .alias("opening_balance")]
    for kind in TOTAL_TYPES:
        sums.append(fn.COALESCE(fn.SUM(Case(None, [(
            in_period & (CardRecord.business_type == kind), CardRecord.amount)], 0)), 0).alias(kind))
    sums.append(fn.SUM(Case(None, [(in_period, 1)], 0)).alias("entries"))
    row = (CardRecord.select(*sums)
           .where((CardRecord.customer == customer_id) & (CardRecord.created_at < until))
           .dicts().get())
    result = {k: int(v or 0) for k, v in row.items()}
    result["net"] = sum(result[k] for k in TOTAL_TYPES)
    result["closing_balance"] = result["opening_balance"] + result["net"]
    return result


def statement(customer_id, start, end, page=1, per_page=PER_PAGE):
    """The statement: one page of entries and the whole period's totals."""
    customer = customers.get_customer(customer_id)
    summary = totals(customer_id, start, end)
    page, _ = paging(summary["entries"], page, per_page)
    rows = list(entries_query(customer_id, start, end).paginate(page, per_page).objects())
    return Statement(customer, start, end, rows, summary, summary["entries"], page, per_page)

