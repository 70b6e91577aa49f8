"""A card's state changes (卡账户管理): freeze, unfreeze and report lost (冻结 / 恢复正常 / 挂失),
and the two that end a card — close (注销: the paid part refunded, the bonus voided) and reissue
(补卡: the money moved to a new card). Money moves only through crm.services.ledger."""
import json

from crm.clock import now
from crm.db import db
from crm.errors import Conflict, ValidationError
from crm.models import AuditLog, Card
from crm.services import audit
from crm.services.card_common import _create_card, _method, _reason, get_card
from crm.services.ledger import NOT_CLOSED, Line, lock_card, once, post
from crm.services.outcomes import Closed, Reissued

TRANSITIONS = {
    "freeze": (("active",), "frozen", "冻结"),
    "unfreeze": (("frozen", "lost"), "active", "恢复正常"),
    "report_lost": (("active", "frozen"), "lost", "挂失"),
}


def change_status(actor, card_id, action, reason):
    """冻结 / 恢复正常 / 挂失, with a reason; audited."""
    if action not in TRANSITIONS:
        raise ValidationError("未知的操作", code="invalid_action")
    allowed, target, label = TRANSITIONS[action]
    reason = _reason(reason)
    with db.atomic():
        card = get_card(card_id)
        changed = (Card.update(status=target, updated_at=now())
                   .where((Card.id == card_id) & Card.status.in_(allowed)).execute())
        if not changed:
            raise Conflict(f"该卡状态为“{Card.STATUSES[card.status]}”，不能{label}",
                           code="invalid_card_status")
        audit.record(actor, f"card.{action}", "card", card_id, reason=reason,
                     changes={"status": [card.status, target]})
    return get_card(card_id)


def _locked_not_closed(card_id):
    """The card, locked for this transaction (the customer first, by lock_card), refused when it
    is closed already: 卡已补卡 (naming the new card) or 卡已注销."""
    lock_card(card_id)
    card = get_card(card_id)
    if card.status == "closed":
        raise _closed(card)
    return card


def close(actor, card_id, key, reason, payment_method="cash"):
    """注销: pay the paid part back as a refund, void the bonus part, then close the card."""
    reason, method = _reason(reason), _method(payment_method)
    parts = ["close", card_id, reason, method]

    def operation():
        card = _locked_not_closed(card_id)
        stamp = now()

        def split(paid, bonus):
            lines = []
            if paid:
                lines.append(Line("refund", paid_delta=-paid, payment_method=method,
                                  remark=f"注销退款：{reason}"[:200]))
            if bonus:
                lines.append(Line("bonus_void", bonus_delta=-bonus,
                                  remark=f"注销，赠送金额不退：{reason}"[:200]))
            return lines

        record_ids = []
        if card.money:
            posted = post(card.id, card.customer_id, -card.money, split, actor, key,
                          allowed=NOT_CLOSED, verb="注销", stamp=stamp)
            record_ids = [r.id for r in posted.records]
        closed = (Card.update(status="closed", closed_at=stamp, updated_at=stamp)
                  .where((Card.id == card.id) & (Card.status != "closed") & (Card.money == 0))
                  .execute())
        if not closed:
            raise Conflict("该卡已注销", code="card_not_active")
        audit.record(actor, "card.close", "card", card.id, reason=reason,
                     refunded=card.paid_money, bonus_voided=card.bonus_money)
        return Closed(card_id=card.id, card_no=card.card_no, balance=0, record_ids=record_ids,
                      refunded=card.paid_money, bonus_voided=card.bonus_money)

    return once(actor, key, parts, operation, Closed)


def _closed(card):
    """The refusal for a card closed already: by a reissue (卡已补卡, naming the new card) or by
    a close (卡已注销) — what the loser of two at once is told."""
    audit_row = (AuditLog.select(AuditLog.detail)
                 .where((AuditLog.action == "card.reissue") & (AuditLog.object_id == str(card.id)))
                 .first())
    if audit_row is not None:
        new_no = json.loads(audit_row.detail or "{}").get("new_card", "")
        where = f"为新卡 {new_no}" if new_no else ""
        return Conflict(f"该卡已补卡{where}，请使用新卡", code="card_reissued")
    return Conflict("该卡已注销", code="card_closed")


def reissue(actor, card_id, key, reason, new_card_no=""):
    """补卡: a new card takes the old one's paid and bonus money over by a transfer pair of
    entries; the old card ends closed."""
    reason = _reason(reason)
    parts = ["reissue", card_id, reason, new_card_no]

    def operation():
        old = _locked_not_closed(card_id)
        new = _create_card(actor, old.customer, new_card_no, f"补卡，原卡 {old.card_no}")
        stamp = now()
        moved = {}

        def take_all(paid, bonus):
            moved.update(paid=paid, bonus=bonus)
            return [Line("transfer_out", paid_delta=-paid, bonus_delta=-bonus,
                         remark=f"补卡转出至 {new.card_no}：{reason}"[:200])]

        if old.money:
            post(old.id, old.customer_id, -old.money, take_all, actor, key, allowed=NOT_CLOSED,
                 verb="补卡", stamp=stamp)
            post(new.id, old.customer_id, old.money,
                 lambda paid, bonus: [Line("transfer_in", paid_delta=moved["paid"],
                                           bonus_delta=moved["bonus"],
                                           remark=f"补卡转入，原卡 {old.card_no}")],
                 actor, key, verb="补卡", stamp=stamp)
        closed = (Card.update(status="closed", closed_at=stamp, updated_at=stamp)
                  .where((Card.id == old.id) & (Card.money == 0) & (Card.status != "closed"))
                  .execute())
        if not closed:
            raise Conflict("原卡余额在办理中发生变化，请重试", code="card_changed")
        audit.record(actor, "card.reissue", "card", old.id, reason=reason, new_card=new.card_no)
        new = get_card(new.id)
        return Reissued(card_id=new.id, card_no=new.card_no, balance=new.money,
                        old_card_id=old.id)

    return once(actor, key, parts, operation, Reissued)

