"""API: cards and money. Amounts are yuan strings with two decimals; every money call needs an
Idempotency-Key header. Each operation is declared once (crm.api.declare)."""
from typing import Literal

from flask import current_app
from pydantic import Field

from crm.api.declare import File, operation
from crm.api.types import (
    Amount,
    Bonus,
    Id,
    Input,
    Ok,
    OptionalAmount,
    Output,
    PaymentMethod,
    Remark,
    Stamp,
    Yuan,
)
from crm.http import actor, admin_required, receipt_file, requires
from crm.services import cards, customers, ledger, receipts, recharge_rules


class Card(Output):
    id: int
    card_no: str
    customer_id: int
    status: Literal["active", "frozen", "lost", "closed"]
    balance: Yuan
    paid_balance: Yuan
    bonus_balance: Yuan

    @classmethod
    def of(cls, card):
        return cls(id=card.id, card_no=card.card_no, customer_id=card.customer_id,
                   status=card.status, balance=card.money, paid_balance=card.paid_money,
                   bonus_balance=card.bonus_money)


class CardList(Output):
    items: list[Card]


class Record(Output):
    """A ledger entry (signed amount: money in positive)."""

    id: int
    card_id: int
    seq: int
    business_type: Literal["opening", "recharge", "bonus", "consume", "reversal", "refund",
                           "bonus_void", "transfer_in", "transfer_out"]
    amount: Yuan
    balance: Yuan
    payment_method: str | None
    reverses_id: int | None
    reversed_by: int | None
    operator_id: int
    remark: str
    time: Stamp

    @classmethod
    def of(cls, record):
        return cls(id=record.id, card_id=record.card_id, seq=record.seq,
                   business_type=record.business_type, amount=record.amount,
                   balance=record.balance_after, payment_method=record.payment_method or None,
                   reverses_id=record.reverses_id, reversed_by=getattr(record, "reversed_by", None),
                   operator_id=record.operator_id, remark=record.remark, time=record.created_at)


class RecordList(Output):
    items: list[Record]


class MoneyResult(Output):
    """A money operation's answer: the keys it has depend on the operation."""

    card_id: int
    card_no: str = ""
    record_id: int | None = None
    record_ids: list[int] = []
    balance: Yuan
    paid_balance: Yuan = 0
    bonus_balance: Yuan = 0
    bonus: Yuan = 0
    amount: Yuan = 0
    original_amount: Yuan = 0
    discount: int | None = None
    consume_id: int = 0
    reversed_ids: list[int] = []
    refunded: Yuan = 0
    bonus_voided: Yuan = 0
    old_card_id: int = 0
    replayed: bool = False


class OpenCardResult(MoneyResult):
    """The new card and, when money was put on it, the recharge."""

    id: int
    customer_id: int
    status: Literal["active", "frozen", "lost", "closed"]
    card_no: str


class OpenCard(Input):
    card_no: str = Field("", max_length=32)
    amount: OptionalAmount = None
    bonus: Bonus = None
    payment_method: PaymentMethod = "cash"
    remark: Remark = ""


class Recharge(Input):
    amount: Amount
    bonus: Bonus = None
    payment_method: PaymentMethod = "cash"
    remark: Remark = ""


class Consume(Input):
    amount: Amount
    remark: Remark = ""
    customer_id: Id = None


class Reason(Input):
    reason: str = Field(min_length=1, max_length=200)


class Reissue(Input):
    reason: str = Field(max_length=200)
    card_no: str = Field("", max_length=32)


class Close(Input):
    reason: str = Field(max_length=200)
    payment_method: PaymentMethod = "cash"


class Receipt(Output):
    record_id: int
    shop_name: str
    time: Stamp
    customer_id: int
    customer_no: str
    customer_name: str
    card_id: int
    card_no: str
    original_amount: Yuan
    discount: int | None = Field(description="会员折扣（实收百分比），没有折扣时为 null")
    amount: Yuan
    balance: Yuan
    operator: str
    remark: str


class Rule(Output):
    id: int
    min_amount: Yuan
    bonus: Yuan

    @classmethod
    def of(cls, rule):
        return cls(id=rule.id, min_amount=rule.min_amount, bonus=rule.bonus)


class RuleList(Output):
    items: list[Rule]


class RuleInput(Input):
    min_amount: Amount
    bonus: Amount


class VerifyReport(Output):
    ok: bool
    cards_checked: int
    entries_checked: int
    problems: list[dict]


DONE = "已办理（或同一编号的第一次结果）"
MONEY_ERRORS = {400: "请求体不是 JSON 对象，或缺少 Idempotency-Key", 404: "会员卡不存在",
                409: "余额不足、卡状态不允许、或请求编号已用于另一笔操作", 422: "金额或字段不合规"}
STATUS_ERRORS = {400: "请求体不是 JSON 对象", 409: "当前状态不允许",
                 422: "缺少原因"}


@operation("GET", "/v1/customers/<int:customer_id>/cards", "客户的会员卡", "listCustomerCards",
           answers={200: (CardList, "OK")})
def list_customer_cards(customer_id):
    """A customer's cards (404 for a customer that does not exist, not an empty list)."""
    customers.get_customer(customer_id)
    return CardList(items=[Card.of(c) for c in cards.cards_of(customer_id)])


@operation("POST", "/v1/customers/<int:customer_id>/cards", "开卡（可同时首次充值）", "openCard",
           body=OpenCard, key=True, answers={201: (OpenCardResult, DONE)}, errors=MONEY_ERRORS)
@requires("recharge")
def open_card(customer_id, body, key):
    """Open a card (card_no optional), optionally with a first recharge (amount, bonus?)."""
    result = cards.open_card(actor(), customer_id, key, card_no=body.card_no, amount=body.amount,
                             bonus=body.bonus,
                             payment_method=body.payment_method, remark=body.remark)
    card = Card.of(cards.get_card(result.card_id))
    return OpenCardResult.from_service({**dict(card), **result.as_dict()})


@operation("GET", "/v1/cards/<int:card_id>", "会员卡", "getCard",
           answers={200: (Card, "OK")})
def get_card(card_id):
    """One card with its balances."""
    return Card.of(cards.get_card(card_id))


@operation("GET", "/v1/cards/<int:card_id>/records", "会员卡流水（新的在前）", "cardRecords",
           answers={200: (RecordList, "OK")})
def card_records(card_id):
    """A card's entries, newest first."""
    cards.get_card(card_id)
    return RecordList(items=[Record.of(r) for r in cards.records(card_id)])


@operation("POST", "/v1/cards/<int:card_id>/recharge", "充值", "recharge", body=Recharge,
           key=True, answers={201: (MoneyResult, DONE)}, errors=MONEY_ERRORS)
@requires("recharge")
def recharge(card_id, body, key):
    """充值: amount, bonus? (absent: by the recharge rules), payment_method?, remark?."""
    return MoneyResult.from_service(cards.recharge(
        actor(), card_id, key, body.amount, bonus=body.bonus, payment_method=body.payment_method,
        remark=body.remark))


@operation("POST", "/v1/cards/<int:card_id>/consume", "消费", "consume", body=Consume, key=True,
           answers={201: (MoneyResult, DONE)}, errors=MONEY_ERRORS)
@requires("consume")
def consume(card_id, body, key):
    """消费: amount (before the member discount), remark?, customer_id? (must hold the card)."""
    return MoneyResult.from_service(cards.consume(
        actor(), card_id, key, body.amount, remark=body.remark, customer_id=body.customer_id))


def _status(action, summary, operation_id):
    """冻结 / 解冻 / 挂失 (reason): one declaration each, one body."""

    def change(card_id, body):
        return Card.of(cards.change_status(actor(), card_id, action, body.reason))

    change.__name__ = change.__qualname__ = action  # the endpoint: api.freeze, …
    return operation("POST", f"/v1/cards/<int:card_id>/{action.replace('_', '-')}", summary,
                     operation_id, body=Reason, answers={200: (Card, "OK")},
                     errors=STATUS_ERRORS)(requires("manage_cards")(change))


freeze = _status("freeze", "冻结", "freezeCard")
unfreeze = _status("unfreeze", "解冻 / 解除挂失", "unfreezeCard")
report_lost = _status("report_lost", "挂失", "reportCardLost")


@operation("POST", "/v1/cards/<int:card_id>/reissue", "补卡", "reissueCard", body=Reissue,
           key=True, answers={201: (MoneyResult, DONE)}, errors=MONEY_ERRORS)
@requires("manage_cards")
def reissue(card_id, body, key):
    """补卡 (reason, card_no?): the money moves to a new card, the old one closes."""
    return MoneyResult.from_service(cards.reissue(actor(), card_id, key, body.reason,
                                                    body.card_no))


@operation("POST", "/v1/cards/<int:card_id>/close", "注销（退本金，赠送清零）", "closeCard",
           body=Close, key=True, answers={201: (MoneyResult, DONE)}, errors=MONEY_ERRORS)
@requires("manage_cards")
def close(card_id, body, key):
    """注销 (reason, payment_method?): refund the paid part, void the bonus, close."""
    return MoneyResult.from_service(cards.close(actor(), card_id, key, body.reason,
                                                  body.payment_method))


@operation("POST", "/v1/records/<int:record_id>/reverse", "冲正（管理员）", "reverseRecord",
           body=Reason, key=True, answers={201: (MoneyResult, DONE)}, errors=MONEY_ERRORS)
@requires("reverse")
def reverse(record_id, body, key):
    """冲正 (admin; reason)."""
    return MoneyResult.from_service(cards.reverse(actor(), record_id, key, body.reason))


@operation("GET", "/v1/records/<int:record_id>/receipt", "消费凭证：一笔消费（或其冲正）的凭证内容",
           "receipt", answers={200: (Receipt, "OK")}, errors={404: "没有这笔消费记录"})
def receipt(record_id):
    """消费凭证: what the receipt of a consumption (or its reversal) shows."""
    return Receipt(**receipts.receipt(record_id), shop_name=current_app.config["SHOP_NAME"])


@operation("GET", "/v1/records/<int:record_id>/receipt.pdf", "消费凭证 PDF（80 mm 小票）",
           "receiptPdf", answers={200: (File("application/pdf"), "凭证")},
           errors={404: "没有这笔消费记录"})
def receipt_pdf(record_id):
    """The receipt as an 80 mm wide PDF."""
    return receipt_file(record_id)


@operation("GET", "/v1/recharge-rules", "充值赠送规则", "listRechargeRules",
           answers={200: (RuleList, "OK")})
def list_rules():
    """The recharge rules in force."""
    return RuleList(items=[Rule.of(r) for r in recharge_rules.active_rules()])


@operation("POST", "/v1/recharge-rules", "添加充值赠送规则（管理员）", "createRechargeRule",
           body=RuleInput, answers={201: (Rule, "已添加")},
           errors={400: "请求体不是 JSON 对象", 409: "已有相同门槛的规则", 422: "字段值不合规"})
@admin_required
def create_rule(body):
    """Add a rule (admin): min_amount, bonus."""
    return Rule.of(recharge_rules.create_rule(actor(), body.min_amount, body.bonus))


@operation("DELETE", "/v1/recharge-rules/<int:rule_id>", "停用充值赠送规则（管理员）",
           "retireRechargeRule", answers={200: (Ok, "OK")})
@admin_required
def retire_rule(rule_id):
    """Switch a rule off (admin)."""
    recharge_rules.retire_rule(actor(), rule_id)
    return Ok(ok=True)


@operation("GET", "/v1/ledger/verify", "账本校验（管理员）：重算签名链，核对余额 = 流水合计",
           "verifyLedger", answers={200: (VerifyReport, "OK")})
@admin_required
def verify():
    """Recompute every chain and balance (admin); the run is audited."""
    report = ledger.verify_and_audit(actor())
    return VerifyReport(ok=report.ok, cards_checked=report.cards_checked,
                        entries_checked=report.entries_checked, problems=report.problems)
