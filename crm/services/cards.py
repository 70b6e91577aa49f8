"""Member cards (卡账户管理) and consumption (消费记录管理): open, recharge, consume, reverse,
and the card's entries and receipts. The state changes (freeze, report lost, reissue, close) are
in crm.services.card_states, what both share in crm.services.card_common; this module is their
surface too (cards.close, cards.get_card …). Money moves only through crm.services.ledger."""
from peewee import JOIN, IntegrityError, fn

from crm.clock import now
from crm.db import db
from crm.errors import Conflict, NotFound
from crm.models import (
    Card,
    CardRecord,
    ConsumeRecord,
    Customer,
    CustomerType,
    RechargeRule,
    User,
)
from crm.money import check_fen
from crm.services import audit, page_number, paging, validate
from crm.services.card_common import (  # noqa: F401 — the cards' surface: taken from here
    _create_card,
    _method,
    _reason,
    check_card_no,
    generated_card_no,
    get_card,
)
from crm.services.card_states import TRANSITIONS, change_status, close, reissue  # noqa: F401 — as above
from crm.services.ledger import (
    BUSINESS_TYPES,
    NOT_CLOSED,
    Line,
    Settings,
    Statements,
    discounted,
    lock_customer,
    member_discount,
    once,
    post,
)
from crm.services.outcomes import Consumed, Recharged, Reversed

REVERSIBLE = ("recharge", "bonus", "consume", "opening")


def _remark(value):
    return validate.text(value, "备注", "remark", 200)


def _amount(fen, field="amount"):
    return check_fen(fen, Settings.max_amount, field)


def _bonus(fen):
    """A hand-given bonus: zero or more, within the limit; None means "by the recharge rules"."""
    if fen is None or fen == 0:
        return fen
    return _amount(fen, "bonus")


def cards_of(customer_id):
    """A customer's cards, active ones first."""
    order = {"active": 0, "frozen": 1, "lost": 2, "closed": 3}
    return sorted(Card.select().where(Card.customer == customer_id).order_by(Card.id),
                  key=lambda c: order.get(c.status, 9))


def bonus_for(amount):
    """The bonus the recharge rules give for a recharge of `amount` fen (the best rule reached)."""
    rule = (RechargeRule.select().where(RechargeRule.active & (RechargeRule.min_amount <= amount))
            .order_by(RechargeRule.bonus.desc()).first())
    return rule.bonus if rule else 0


def _recharge_lines(amount, bonus, method, remark):
    lines = [Line("recharge", paid_delta=amount, payment_method=method, remark=remark)]
    if bonus:
        lines.append(Line("bonus", bonus_delta=bonus, remark=f"充值赠送 {remark}".strip()))
    return lines


def _result(outcome, posted, **extra):
    """The `outcome` of a posting: the card as it left it and the entries it wrote."""
    card = posted.card
    return outcome(card_id=card.id, card_no=card.card_no, record_id=posted.records[0].id,
                   record_ids=[r.id for r in posted.records], balance=card.money,
                   paid_balance=card.paid_money, bonus_balance=card.bonus_money, **extra)


def open_card(actor, customer_id, key, card_no="", amount=None, bonus=None,
              payment_method="cash", remark=""):
    """Open a card for a customer, optionally with a first recharge, in one transaction. A bonus
    goes only with a first recharge: without `amount` it is ignored (the page's and the API's one
    rule)."""
    remark = _remark(remark)
    if amount is not None:
        amount, method = _amount(amount), _method(payment_method)
        bonus = _bonus(bonus)
    else:
        bonus = None
    parts = ["open", customer_id, card_no, amount, bonus, payment_method, remark]

    def operation():
        lock_customer(customer_id)  # the card's number joins the customer's search pieces
        customer = Customer.get_or_none(Customer.id == customer_id)
        if customer is None:
            raise NotFound("客户不存在", code="customer_not_found")
        if customer.archived:
            raise Conflict("该客户已归档，请先恢复再开卡", code="customer_archived")
        card = _create_card(actor, customer, card_no, remark)
        if amount is None:
            return Recharged(card_id=card.id, card_no=card.card_no, balance=0)
        given = bonus_for(amount) if bonus is None else bonus
        posted = post(card.id, customer.id, amount + given,
                      lambda paid, b: _recharge_lines(amount, given, method, remark),
                      actor, key, verb="充值", visit=True)
        return _result(Recharged, posted, bonus=given)

    return once(actor, key, parts, operation, Recharged)


def _card_or_404(card_id):
    card = Card.get_or_none(Card.id == card_id)
    if card is None:
        raise NotFound("会员卡不存在", code="card_not_found")
    return card


def recharge(actor, card_id, key, amount, bonus=None, payment_method="cash", remark=""):
    """充值: add paid money (and a bonus: by hand, or by the recharge rules when None)."""
    amount, method, remark = _amount(amount), _method(payment_method), _remark(remark)
    bonus = _bonus(bonus)
    parts = ["recharge", card_id, amount, bonus, method, remark]

    def operation():
        card = _card_or_404(card_id)
        given = bonus_for(amount) if bonus is None else bonus
        posted = post(card_id, card.customer_id, amount + given,
                      lambda paid, b: _recharge_lines(amount, given, method, remark),
                      actor, key, verb="充值", visit=True)
        return _result(Recharged, posted, bonus=given)

    return once(actor, key, parts, operation, Recharged)


def customer_discount(customer_id):
    """The member discount (percent charged) of the customer's type, or None."""
    ctype = (CustomerType.select(CustomerType.discount)
             .join(Customer, on=(Customer.type == CustomerType.id))
             .where(Customer.id == customer_id).first())
    return member_discount(ctype.discount) if ctype else None


def _draw(total, paid, bonus):
    """How a consumption of `total` fen is drawn from the paid and bonus parts."""
    if Settings.consume_order == "bonus_first":
        from_bonus = min(bonus, total)
        return total - from_bonus, from_bonus
    from_paid = min(paid, total)
    return from_paid, total - from_paid


def consume(actor, card_id, key, amount, remark="", customer_id=None):
    """消费: charge the card (the customer type's discount applies), in one transaction with the
    consume record and the ledger entry. With customer_id, the card must be that customer's."""
    amount, remark = _amount(amount), _remark(remark)
    parts = ["consume", card_id, amount, remark, customer_id]

    def operation():
        sql = Statements.get()
        # One narrow query for what the consumption needs before it locks anything.
        found = db.execute_sql(sql.card_for_consume, (card_id,)).fetchone()
        if found is None:
            raise NotFound("会员卡不存在", code="card_not_found")
        holder, discount = found
        if customer_id is not None and holder != customer_id:
            raise Conflict("该卡不属于此客户，请重新选择", code="card_not_of_customer")
        discount = member_discount(discount)
        charged = discounted(amount, discount)
        stamp = now()

        def split(paid, bonus):
            from_paid, from_bonus = _draw(charged, paid, bonus)
            return [Line("consume", paid_delta=-from_paid, bonus_delta=-from_bonus, remark=remark)]

        posted = post(card_id, holder, -charged, split, actor, key, verb="消费", stamp=stamp,
                      visit=True)
        record = posted.records[0]
        consume_id = db.execute_sql(sql.insert_consume, (
            card_id, holder, record.id, amount, discount, charged, record.balance_after,
            actor.user.id, key, remark, record.created_at.strftime("%Y-%m-%d %H:%M:%S"))).lastrowid
        return _result(Consumed, posted, consume_id=consume_id, original_amount=amount,
                       discount=discount, amount=charged)

    return once(actor, key, parts, operation, Consumed)


def reverse(actor, record_id, key, reason):
    """冲正 (admin): undo a recharge, bonus, opening or consumption with an opposite entry that
    points at it. A recharge's bonus from the same request is reversed with it. An entry is
    reversed at most once; a reversal that would make a balance negative is refused."""
    reason = _reason(reason)
    parts = ["reverse", record_id, reason]

    def operation():
        original = CardRecord.get_or_none(CardRecord.id == record_id)
        if original is None:
            raise NotFound("流水记录不存在", code="record_not_found")
        if original.business_type not in REVERSIBLE:
            raise Conflict(f"“{BUSINESS_TYPES.get(original.business_type)}”记录不能冲正",
                           code="not_reversible")
        # A recharge and the bonus it earned are one request: reversed together, through the
        # recharge. A bonus reversed on its own first would leave the recharge's money stuck.
        partners = list(CardRecord.select().where(
            (CardRecord.card == original.card_id) & (CardRecord.request_id == original.request_id)
            & (CardRecord.business_type == ("recharge" if original.business_type == "bonus"
                                            else "bonus")))) if original.request_id else []
        if original.business_type == "bonus" and partners:
            raise Conflict(f"赠送金额随充值一起冲正：请冲正充值记录 #{partners[0].id}",
                           code="reverse_with_recharge")
        targets = [original] + (partners if original.business_type == "recharge" else [])
        done = {r.reverses_id for r in CardRecord.select(CardRecord.reverses).where(
            CardRecord.reverses.in_([t.id for t in targets]))}
        if original.id in done:
            raise Conflict("该记录已冲正过，不能重复冲正", code="already_reversed")
        # A bonus reversed alone before this rule: the recharge's own money still goes back.
        targets = [t for t in targets if t.id not in done]
        lines = [Line("reversal", paid_delta=-t.paid_delta, bonus_delta=-t.bonus_delta,
                      remark=f"冲正 #{t.id}：{reason}"[:200], reverses=t.id) for t in targets]
        total = sum(line.amount for line in lines)
        try:
            with db.atomic():
                posted = post(original.card_id, original.customer_id, total,
                              lambda paid, bonus: lines, actor, key, allowed=NOT_CLOSED,
                              verb="冲正")
        except IntegrityError:  # the unique index: a parallel reversal won
            raise Conflict("该记录已冲正过，不能重复冲正", code="already_reversed") from None
        if original.business_type == "consume":
            first = ConsumeRecord.get(ConsumeRecord.card_record == original.id)
            ConsumeRecord.create(
                card=original.card_id, customer=original.customer_id,
                card_record=posted.records[0].id, original_amount=-first.original_amount,
                discount=first.discount, amount=-first.amount,
                balance_after=posted.records[0].balance_after, operator=actor.user,
                request_id=key, remark=posted.records[0].remark, created_at=posted.records[0].created_at)
        audit.record(actor, "ledger.reverse", "card_record", original.id, reason=reason,
                     reversal_ids=[r.id for r in posted.records])
        return _result(Reversed, posted, reversed_ids=[t.id for t in targets])

    return once(actor, key, parts, operation, Reversed)


# --- reading --------------------------------------------------------------------------------

RECORDS_PER_PAGE = 30  # the card page: the newest entries, older ones a page further


def bonus_with(records):
    """{recharge entry id: the bonus of the same request} for the recharges among `records`: a
    recharge is reversed with its bonus (reverse()), so its confirmation names both."""
    recharges = {r.request_id: r.id for r in records
                 if r.business_type == "recharge" and r.request_id}
    if not recharges:
        return {}
    rows = (CardRecord.select(CardRecord.request_id, fn.SUM(CardRecord.amount))
            .where(CardRecord.request_id.in_(list(recharges))
                   & (CardRecord.card == records[0].card_id)
                   & (CardRecord.business_type == "bonus"))
            .group_by(CardRecord.request_id).tuples())
    return {recharges[request]: int(amount) for request, amount in rows}


def records_page(card, page=1):
    """The card page's entries: (entries, page, pages), RECORDS_PER_PAGE of them newest first."""
    page, pages = paging(card.entry_count, page, RECORDS_PER_PAGE)
    return records(card.id, RECORDS_PER_PAGE, page), page, pages


def records(card_id, limit=200, page=1):
    """A card's entries, newest first, `limit` of them from page `page`, with their operators
    and which were reversed."""
    reversal = CardRecord.alias()
    query = (CardRecord.select(CardRecord, User.username, User.display_name,
                               reversal.id.alias("reversed_by"))
             .join(User, on=(CardRecord.operator == User.id))
             .switch(CardRecord)
             .join(reversal, JOIN.LEFT_OUTER, on=(reversal.reverses == CardRecord.id))
             .where(CardRecord.card == card_id)
             .order_by(CardRecord.seq.desc()).paginate(page_number(page), limit))
    return list(query.objects())


def receipt(record_id):
    """A consumption's receipt: the entry, its consume record, card and customer."""
    row = (ConsumeRecord.select(ConsumeRecord, CardRecord, Card, Customer, User)
           .join(CardRecord, on=(ConsumeRecord.card_record == CardRecord.id))
           .switch(ConsumeRecord).join(Card, on=(ConsumeRecord.card == Card.id))
           .switch(ConsumeRecord).join(Customer, on=(ConsumeRecord.customer == Customer.id))
           .switch(ConsumeRecord).join(User, on=(ConsumeRecord.operator == User.id))
           .where(ConsumeRecord.card_record == record_id).first())
    if row is None:
        raise NotFound("没有这笔消费记录", code="record_not_found")
    return row


def card_by_number(q):
    """The card whose number is exactly `q` (as typed or scanned), or None."""
    q = (q or "").strip()
    return Card.get_or_none(Card.card_no == q) if q else None


def counter_search(q, limit=10):
    """The consume counter's search: customers matching q, each with their cards (two queries)."""
    if not (q or "").strip():
        return []
    found = list(Customer.search(q).order_by(Customer.id.desc()).limit(limit))
    held = {}
    for card in (Card.select().where(Card.customer.in_([c.id for c in found] or [0]))
                 .order_by(Card.id)):
        held.setdefault(card.customer_id, []).append(card)
    return [(customer, held.get(customer.id, [])) for customer in found]

