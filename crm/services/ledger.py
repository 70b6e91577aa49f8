"""The money ledger: the only code that changes a card's balance.

Every movement is one transaction that
1. changes the card's total with one conditional UPDATE (card in an allowed state, total never
   below zero), which also takes the card's row lock; no balance is read before it;
2. under that lock, splits the movement into paid (本金) and bonus (赠送) parts from the locked row
   and refuses any part that would go below zero;
3. appends the entries to t_card_record, each sealed into the card's HMAC-SHA256 chain;
4. writes the card's paid/bonus parts and chain head as plain values (so the order of SET
   assignments, evaluated differently by MySQL and SQLite, can never matter);
5. stores the request's idempotency key with its answer.

The key and the seals are in crm.services.ledger_keys, the verification in
crm.services.ledger_verification; this module is also their surface (ledger.verify, ledger.seal …).
"""
import hashlib
import hmac
import json
import re
from dataclasses import dataclass, field

from peewee import IntegrityError

from crm.clock import as_text, now
from crm.db import db
from crm.errors import Conflict, NotFound, ValidationError
from crm.models import Card, CardRecord
from crm.money import format_yuan
from crm.services import hold, ledger_keys
from crm.services.ledger_keys import (  # noqa: F401 — the ledger's surface: taken from here
    RECORD_COLUMNS,
    adopt_key,
    current_key,
    key_fingerprint,
    manifest_signed,
    owner_seal,
    recovery_key,
    seal,
    seal_owners,
    sealing_with,
    sign_manifest,
)
from crm.services.ledger_verification import (  # noqa: F401 — the ledger's surface, as above
    Report,
    last_verification,
    verify,
    verify_and_audit,
)

BUSINESS_TYPES = {
    "opening": "期初", "recharge": "充值", "bonus": "赠送", "consume": "消费", "reversal": "冲正",
    "refund": "退款", "bonus_void": "赠送清零", "transfer_in": "转入", "transfer_out": "转出",
}
PAYMENT_METHODS = {"cash": "现金", "wechat": "微信", "alipay": "支付宝", "card": "银行卡",
                   "other": "其他"}
CONSUME_ORDERS = {"paid_first": "先扣本金，再扣赠送", "bonus_first": "先扣赠送，再扣本金"}
_KEY = re.compile(r"^[A-Za-z0-9_\-]{8,64}$")


class Settings:
    """The money rules in force; the app sets them from its configuration at start."""

    max_amount = 5_000_000
    consume_order = "paid_first"


def configure(config):
    """Take the ledger key and money rules from the app configuration."""
    ledger_keys.configure(config)
    Settings.max_amount = int(config["MAX_AMOUNT_FEN"])
    order = config.get("CONSUME_ORDER", "paid_first")
    if order not in CONSUME_ORDERS:
        raise ValueError(f"CONSUME_ORDER must be one of {', '.join(CONSUME_ORDERS)}")
    Settings.consume_order = order


def member_discount(discount):
    """A type's discount as it applies: a percent below 100, or None (no discount)."""
    return discount if discount and discount < 100 else None


def discounted(amount, discount):
    """What a customer of a type with `discount` percent pays for `amount` (rounded half up)."""
    if member_discount(discount) is None:
        return amount
    return max(1, (amount * discount + 50) // 100)


# --- posting ------------------------------------------------------------------------------------

@dataclass
class Line:
    """One entry to append: its type and how it moves the paid and bonus parts (fen, signed)."""

    business_type: str
    paid_delta: int = 0
    bonus_delta: int = 0
    payment_method: str = ""
    remark: str = ""
    reverses: int | None = None

    @property
    def amount(self):
        """The entry's signed total."""
        return self.paid_delta + self.bonus_delta


@dataclass
class Posted:
    """What a movement did: the card after it and the entries written."""

    card: Card
    records: list = field(default_factory=list)


ACTIVE = ("active",)
NOT_CLOSED = ("active", "frozen", "lost")


def _refusal(card_id, total, allowed, verb):
    """Why the conditional UPDATE changed nothing: no card, wrong state, or not enough money."""
    card = Card.get_or_none(Card.id == card_id)
    if card is None:
        return NotFound("会员卡不存在", code="card_not_found")
    if card.status not in allowed:
        return Conflict(f"该卡状态为“{Card.STATUSES.get(card.status, card.status)}”，不能{verb}",
                        code="card_not_active")
    return Conflict(f"余额不足：卡内余额 {format_yuan(card.money)}，本次需扣 {format_yuan(-total)}",
                    code="insufficient_balance")


class Statements:
    """The money path's SQL, written out once per database dialect (placeholder and quoting
    style). peewee rebuilds a statement's text on every call, which was a third of a
    consumption's CPU time; these run hundreds of times a second under load."""

    _cache = {}

    def __init__(self, database):
        p, quote = database.param, database.quote  # quote: the open and close characters
        key = f"{quote[0]}key{quote[1]}"  # a reserved word in MySQL
        record_columns = ", ".join(RECORD_COLUMNS[1:])  # the id comes from the database
        self.param = p
        self.visit = f"UPDATE t_customer SET last_visit_at = {p} WHERE id = {p}"
        # Writes the row without changing it: takes the customer's row lock (see post()).
        self.lock_customer = f"UPDATE t_customer SET last_visit_at = last_visit_at WHERE id = {p}"
        self.locked_card = ("SELECT card_no, money, paid_money, bonus_money, entry_count, "
                            f"chain_head FROM t_card WHERE id = {p}")
        self.insert_record = (f"INSERT INTO t_card_record ({record_columns}) VALUES "
                              f"({', '.join([p] * (len(RECORD_COLUMNS) - 1))})")
        self.set_parts = (f"UPDATE t_card SET paid_money = {p}, bonus_money = {p}, "
                          f"entry_count = {p}, chain_head = {p} WHERE id = {p}")
        self.find_key = (f"SELECT user_id, fingerprint, response FROM t_idempotency_key "
                         f"WHERE {key} = {p}")
        self.insert_key = (f"INSERT INTO t_idempotency_key ({key}, user_id, fingerprint, "
                           f"status_code, response, created_at) VALUES ({p}, {p}, {p}, {p}, {p}, "
                           f"{p})")
        self.card_for_consume = (
            "SELECT c.customer_id, t.discount FROM t_card c "
            "JOIN t_customer u ON u.id = c.customer_id "
            f"LEFT JOIN t_customer_type t ON t.id = u.type_id WHERE c.id = {p}")
        self.insert_consume = (
            "INSERT INTO t_consume_record (card_id, customer_id, card_record_id, original_amount, "
            "discount, amount, balance_after, operator_id, request_id, remark, created_at) "
            f"VALUES ({', '.join([p] * 11)})")

    def move(self, statuses):
        """The conditional update: the card in an allowed state, the total never below zero."""
        marks = ", ".join([self.param] * statuses)
        p = self.param
        return (f"UPDATE t_card SET money = money + {p}, updated_at = {p} WHERE id = {p} "
                f"AND status IN ({marks}) AND money + {p} >= 0")

    @classmethod
    def get(cls):
        """The statements for the database in use."""
        database = db.obj
        kind = type(database)
        if kind not in cls._cache:
            cls._cache[kind] = cls(database)
        return cls._cache[kind]


def lock_customer(customer_id):
    """Take a customer row's write lock for the caller's transaction — a no-op UPDATE, the same
    on MySQL and SQLite (peewee's for_update() raises on SQLite). Customer first, then card: the
    one order of every lock on money."""
    db.execute_sql(Statements.get().lock_customer, (customer_id,))


def lock_card(card_id):
    """Lock a card for the caller's transaction before reading it — its customer's row first,
    then the card's, the order post() takes them in — for operations that must read the
    balance they move (close, reissue): read before the lock, a recharge landing in between
    made the lines and the movement disagree. Raises NotFound for no such card."""
    sql, run = Statements.get(), db.execute_sql
    hold.refuse_while_held()
    row = run(f"SELECT customer_id FROM t_card WHERE id = {sql.param}", (card_id,)).fetchone()
    if row is None:
        raise NotFound("会员卡不存在", code="card_not_found")
    lock_customer(row[0])
    run(f"UPDATE t_card SET money = money WHERE id = {sql.param}", (card_id,))


def post(card_id, customer_id, total, split, actor, request_id="", allowed=ACTIVE, verb="办理",
         stamp=None, visit=False):
    """Move `total` fen (signed) on a card as one or more entries; `split(paid, bonus)` returns
    the Lines, given the card's parts as locked. Must run inside the caller's transaction.

    Locks are always taken customer first, then card: the entries' foreign keys take shared
    locks on the customer row, and two cards of one customer moving at once would otherwise
    deadlock when each then wants the customer row for itself. A visit (recharge, consumption)
    also records the customer's last visit."""
    sql, run = Statements.get(), db.execute_sql
    hold.refuse_while_held()  # first: a restore's hold waits for this transaction, or refuses it
    stamp = stamp or now()
    when = as_text(stamp)
    if visit:
        run(sql.visit, (when, customer_id))
    else:
        run(sql.lock_customer, (customer_id,))
    moved = run(sql.move(len(allowed)), (total, when, card_id, *allowed, total)).rowcount
    if not moved:
        raise _refusal(card_id, total, allowed, verb)
    # The row we now hold locked.
    card_no, money, paid, bonus, seq, prev_hash = run(sql.locked_card, (card_id,)).fetchone()
    lines = split(paid, bonus)
    key = current_key()
    if sum(line.amount for line in lines) != total:
        raise AssertionError("ledger lines do not add up to the movement")
    records = []
    for line in lines:
        paid += line.paid_delta
        bonus += line.bonus_delta
        if paid < 0 or bonus < 0:
            part = "本金" if paid < 0 else "赠送金额"
            raise Conflict(f"{part}不足，不能{verb}", code="insufficient_balance")
        seq += 1
        entry = {"card": card_id, "customer": customer_id, "seq": seq,
                 "business_type": line.business_type, "amount": line.amount,
                 "paid_delta": line.paid_delta, "bonus_delta": line.bonus_delta,
                 "balance_after": paid + bonus, "paid_after": paid, "bonus_after": bonus,
                 "payment_method": line.payment_method, "reverses": line.reverses,
                 "operator": actor.user.id, "request_id": request_id, "remark": line.remark,
                 "created_at": stamp, "prev_hash": prev_hash}
        entry["hash"] = prev_hash = seal(entry, prev_hash, key)
        values = [entry[k] for k in ("card", "customer", "seq", "business_type", "amount",
                                     "paid_delta", "bonus_delta", "balance_after", "paid_after",
                                     "bonus_after", "payment_method", "reverses", "operator",
                                     "request_id", "remark")]
        record_id = run(sql.insert_record, (*values, when, entry["prev_hash"],
                                            entry["hash"])).lastrowid
        records.append(CardRecord(id=record_id, **entry))
    run(sql.set_parts, (paid, bonus, seq, prev_hash, card_id))
    card = Card(id=card_id, card_no=card_no, customer=customer_id, money=paid + bonus,
                paid_money=paid, bonus_money=bonus, entry_count=seq, chain_head=prev_hash)
    return Posted(card=card, records=records)


def open_with_balances(openings, actor, stamp):
    """Opening balances (期初) for cards created in the caller's transaction and never used yet:
    one sealed `opening` entry each, written in bulk. `openings` maps card id → (customer id,
    fen). Only for brand-new cards: nobody else can hold them, so no conditional update is needed."""
    hold.refuse_while_held()
    records, key = [], current_key()
    for card_id, (customer_id, amount) in openings.items():
        entry = {"card": card_id, "customer": customer_id, "seq": 1, "business_type": "opening",
                 "amount": amount, "paid_delta": amount, "bonus_delta": 0,
                 "balance_after": amount, "paid_after": amount, "bonus_after": 0,
                 "payment_method": "", "reverses": None, "operator": actor.user.id,
                 "request_id": "", "remark": "期初余额（导入）", "created_at": stamp, "prev_hash": ""}
        entry["hash"] = seal(entry, "", key)
        records.append(entry)
        (Card.update(money=amount, paid_money=amount, entry_count=1, chain_head=entry["hash"])
         .where((Card.id == card_id) & (Card.entry_count == 0)).execute())
    for start in range(0, len(records), 500):
        CardRecord.insert_many(records[start:start + 500]).execute()
    return len(records)


# --- idempotency --------------------------------------------------------------------------------

def check_key(key):
    """An idempotency key must be 8–64 letters, digits, - or _ (a UUID fits)."""
    if not isinstance(key, str) or not _KEY.match(key):
        raise ValidationError("缺少或无效的请求编号（Idempotency-Key：8–64 位字母、数字、- 或 _）",
                              code="missing_idempotency_key", status=400)
    return key


def _fingerprint(parts):
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _replay(found, fingerprint, actor, outcome):
    """The first answer for a key again — only to the user who sent it: another user's key is
    refused and learns nothing of that answer."""
    owner, stored_fingerprint, response = found
    if owner != actor.user.id:
        raise Conflict("该请求编号已被其他用户使用，没有执行；请刷新页面后重新提交",
                       code="idempotency_key_reused")
    if not hmac.compare_digest(stored_fingerprint, fingerprint):
        raise Conflict("该请求编号已用于另一笔不同的操作，没有重复执行；请刷新页面后重新提交",
                       code="idempotency_key_reused")
    return outcome.from_json(response, replayed=True)


def once(actor, key, parts, operation, outcome):
    """Run `operation()` (which returns an `outcome`, a crm.services.outcomes type) once per key:
    the same key again returns the first outcome (replayed) and moves nothing; the same key for a
    different request, or from another user, is refused. The key is stored in the operation's
    own transaction, so a crash cannot separate them."""
    check_key(key)
    sql = Statements.get()
    fingerprint = _fingerprint(parts)
    found = db.execute_sql(sql.find_key, (key,)).fetchone()
    if found:
        return _replay(found, fingerprint, actor, outcome)
    try:
        with db.atomic():
            result = operation()
            db.execute_sql(sql.insert_key, (key, actor.user.id, fingerprint, 201,
                                            result.to_json(), as_text(now())))
    except IntegrityError:
        # The same key committed by a parallel request first: ours rolled back whole.
        found = db.execute_sql(sql.find_key, (key,)).fetchone()
        if found is None:
            raise
        return _replay(found, fingerprint, actor, outcome)
    return result
