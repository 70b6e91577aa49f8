"""工作台: today at a glance for the home page — the shop's figures (for those who may see the
statistics) and the clerk's own. Read from today's entries through the daily closing's rule
(crm.services.stats.closing: its covering index on the entries' time) and the customers'
creation-time index, so the page stays quick however long the ledger grows."""
import datetime
from dataclasses import dataclass, field

from crm.clock import now
from crm.models import Customer
from crm.services import stats


@dataclass
class Today:
    """One day's figures in fen: net of reversals, as the daily closing counts them."""

    recharge: int = 0  # paid in by recharges (and card openings with money)
    recharges: int = 0
    bonus: int = 0
    consume: int = 0  # charged by consumptions
    consumptions: int = 0
    new_customers: int = 0
    money_in: dict = field(default_factory=dict)  # payment method -> fen taken in
    cash: int = 0  # what the till should hold from today's takings


def _count(lines, kind):
    """How many entries of `kind`, less those reversed today (as the amounts are net)."""
    return sum(line["count"] for line in lines if line["business_type"] == kind) - sum(
        line["count"] for line in lines
        if line["business_type"] == "reversal" and line["reverses_type"] == kind)


def today(operator_id=None):
    """Today's figures for the shop, or for one operator (their own entries and customers)."""
    day = now().date()
    closing = stats.closing(day, operator_id)
    totals, lines = closing["totals"], closing["lines"]
    start = datetime.datetime.combine(day, datetime.time())
    created = Customer.select().where(Customer.created_at >= start)
    if operator_id:
        created = created.where(Customer.created_by == operator_id)
    return Today(
        recharge=totals.get("recharge", 0) + totals.get("reversal_recharge", 0),
        recharges=_count(lines, "recharge"),
        bonus=totals.get("bonus", 0) + totals.get("reversal_bonus", 0),
        consume=-(totals.get("consume", 0) + totals.get("reversal_consume", 0)),
        consumptions=_count(lines, "consume"),
        new_customers=created.count(), money_in=closing["money_in"], cash=closing["cash"])
