"""What a card operation did, as typed results (issue 18.1): every amount is integer fen and
says so in its type, so neither the web pages nor the API guess which keys are money.

An outcome is stored as JSON with its request key (crm.services.ledger.once) and made again
from it when the same request comes back; an answer stored before a field existed reads that
field's default. The API turns each one into its declared answer (crm.api.cards.MoneyResult),
where fen become yuan text once."""
import dataclasses
import json
from dataclasses import dataclass, field

Fen = int  # an amount in fen (分), exact; 0.01 yuan = 1


@dataclass(frozen=True, kw_only=True)
class CardOutcome:
    """A card operation's result: the card it left and the ledger entries it wrote."""

    card_id: int
    card_no: str
    balance: Fen  # the card's balance after the operation
    record_ids: list[int] = field(default_factory=list)
    replayed: bool = False  # True: the same request key again — the first answer, nothing moved

    def as_dict(self):
        """The outcome as plain data (amounts still fen)."""
        return dataclasses.asdict(self)

    def to_json(self):
        """What the request key keeps (without `replayed`, which is the answer's, not the deed's)."""
        data = self.as_dict()
        data.pop("replayed")
        return json.dumps(data)

    @classmethod
    def from_json(cls, text, **changes):
        """The stored outcome again; keys a later version no longer has are left out."""
        known = {f.name for f in dataclasses.fields(cls)}
        data = {k: v for k, v in json.loads(text).items() if k in known}
        return cls(**{**data, **changes})


@dataclass(frozen=True, kw_only=True)
class Posted(CardOutcome):
    """Money moved on the card by one posting: its first entry and the parts of the balance."""

    record_id: int | None = None  # None: a card opened without money
    paid_balance: Fen = 0
    bonus_balance: Fen = 0


@dataclass(frozen=True, kw_only=True)
class Recharged(Posted):
    """充值, or a card opened (with or without a first recharge)."""

    bonus: Fen = 0  # given with the recharge (rule or typed)


@dataclass(frozen=True, kw_only=True)
class Consumed(Posted):
    """消费: `amount` charged after the customer type's discount of `original_amount`."""

    consume_id: int = 0
    original_amount: Fen = 0
    discount: int | None = None  # percent charged (88 = 8.8 折); None: no discount
    amount: Fen = 0


@dataclass(frozen=True, kw_only=True)
class Reversed(Posted):
    """冲正: the entries it undid."""

    reversed_ids: list[int] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class Closed(CardOutcome):
    """注销: the paid part refunded, the bonus voided; the balance is 0."""

    refunded: Fen = 0
    bonus_voided: Fen = 0


@dataclass(frozen=True, kw_only=True)
class Reissued(CardOutcome):
    """补卡: the new card (card_id, card_no, balance) and the old one it replaced."""

    old_card_id: int = 0
