"""What the card services share (crm.services.cards and crm.services.card_states): a card
looked up, a card number typed or made by the system, a new card with its owner seal, and the
reason and payment-method checks."""
import re

from peewee import IntegrityError

from crm.db import db
from crm.errors import Conflict, NotFound, ValidationError
from crm.models import Card, Counter, Customer
from crm.search_index import CustomerGram
from crm.services import audit, validate
from crm.services.ledger import PAYMENT_METHODS, seal_owners

_CARD_NO = re.compile(r"^[A-Za-z0-9\-]{4,32}$")


def _reason(value):
    return validate.text(value, "原因", "reason", 200, required=True)


def _method(value):
    value = value or "cash"
    if value not in PAYMENT_METHODS:
        raise ValidationError("支付方式只能是 现金、微信、支付宝、银行卡 或 其他",
                              code="invalid_payment_method", field="payment_method")
    return value


def get_card(card_id):
    """The card with its customer, or NotFound."""
    card = (Card.select(Card, Customer).join(Customer)
            .where(Card.id == card_id).first())
    if card is None:
        raise NotFound("会员卡不存在", code="card_not_found")
    return card


def generated_card_no(number):
    """A card number made by the system from the t_counter "card" sequence: 8 and 7 digits."""
    return f"8{number:07d}"


def check_card_no(card_no):
    """A typed card number: 4–32 letters, digits or -."""
    if not _CARD_NO.match(card_no):
        raise ValidationError("卡号为 4–32 位字母、数字或 -", code="invalid_card_no", field="card_no")
    return card_no


def _new_card_no(card_no):
    card_no = (card_no or "").strip()
    if not card_no:
        return generated_card_no(Counter.take("card"))
    check_card_no(card_no)
    if Card.select().where(Card.card_no == card_no).exists():
        raise Conflict(f"卡号 {card_no} 已存在", code="duplicate_card_no", field="card_no")
    return card_no


def _create_card(actor, customer, card_no, remark=""):
    """A new card for the customer, sealed and found by its number in the search; the caller
    holds the customer's row lock (ledger.lock_customer), so an edit of the same customer's
    phone cannot drop a piece the number shares with it."""
    try:
        with db.atomic():
            card = Card.create(card_no=_new_card_no(card_no), customer=customer.id,
                               created_by=actor.user, remark=remark)
            seal_owners([card.id])
            CustomerGram.add([(customer.id, card.card_no)])
    except IntegrityError:
        raise Conflict(f"卡号 {card_no} 已存在", code="duplicate_card_no", field="card_no") from None
    audit.record(actor, "card.open", "card", card.id, customer=customer.id, card_no=card.card_no)
    return card

