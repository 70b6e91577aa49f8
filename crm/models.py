"""The tables. Money is integer fen in BIGINT columns; ledger tables are append-only."""

from peewee import (
    SQL,
    BigIntegerField,
    BooleanField,
    CharField,
    DateField,
    DateTimeField,
    ForeignKeyField,
    IntegerField,
    Model,
    SmallIntegerField,
    TextField,
    fn,
)

from crm.clock import now
from crm.db import column_list, db, executemany


class BaseModel(Model):
    """Shared base: every model lives in the app's database."""

    class Meta:
        database = db
        legacy_table_names = False

    @classmethod
    def insert_rows(cls, rows):
        """Insert many rows (dicts naming the same fields; the fields' defaults fill the rest)
        with one statement text and the driver's executemany. peewee's insert_many builds the
        text value by value: most of a 10,000-row customer import went there."""
        rows = list(rows)
        if not rows:
            return
        meta, database = cls._meta, cls._meta.database
        keys = list(rows[0])
        given = [meta.combined[key] for key in keys]
        named = {f.name for f in given}  # (not `f in given`: a Field's == builds an expression)
        filled = [f for f in meta.sorted_fields if f.name not in named and f.default is not None]
        fixed = tuple(f.db_value(f.default() if callable(f.default) else f.default)
                      for f in filled)
        statement = (f"INSERT INTO {meta.table_name} "
                     f"({column_list(database, [f.column_name for f in given + filled])}) "
                     f"VALUES ({', '.join([database.param] * (len(given) + len(filled)))})")
        executemany(database, statement,
                    (tuple(f.db_value(row[key]) for f, key in zip(given, keys, strict=True)) + fixed
                     for row in rows), chunk=1000)


class User(BaseModel):
    """A person who logs in: the owner (admin) or staff (operator)."""

    ROLES = {"admin": "管理员", "operator": "操作员"}

    username = CharField(max_length=50, unique=True)
    display_name = CharField(max_length=50, default="")
    password_hash = CharField(max_length=100)
    role = CharField(max_length=10, default="operator")
    active = BooleanField(default=True)
    permissions = TextField(default="")  # JSON of per-operator switches; empty: role defaults
    created_at = DateTimeField(default=now)
    updated_at = DateTimeField(default=now)
    last_login_at = DateTimeField(null=True)

    class Meta:
        table_name = "t_user"

    # The user interface Flask-Login expects; get_id() is the login's own token, so that logging
    # out (revoking the token) ends exactly that login.
    session_token = None
    is_anonymous = False

    @property
    def is_authenticated(self):
        """True: a loaded user is logged in."""
        return True

    @property
    def is_active(self):
        """False for disabled users, who cannot log in."""
        return bool(self.active)

    def get_id(self):
        """The session token Flask-Login keeps in the signed session cookie."""
        return self.session_token

    @property
    def is_admin(self):
        """True for the shop owner's role."""
        return self.role == "admin"

    @property
    def role_label(self):
        """The role's Chinese name."""
        return self.ROLES.get(self.role, self.role)

    @property
    def name(self):
        """What the UI calls this user."""
        return self.display_name or self.username


class AuthToken(BaseModel):
    """A login: a browser session (kind web) or an API bearer token (kind api). Only a hash of the
    secret is stored; revoking the row ends the login at once."""

    user = ForeignKeyField(User, backref="tokens", on_delete="CASCADE")
    kind = CharField(max_length=10)
    token_hash = CharField(max_length=64, unique=True)
    created_at = DateTimeField(default=now)
    expires_at = DateTimeField()
    last_used_at = DateTimeField(default=now)
    revoked_at = DateTimeField(null=True)
    ip = CharField(max_length=45, default="")
    user_agent = CharField(max_length=200, default="")

    class Meta:
        table_name = "t_auth_token"


class LoginThrottle(BaseModel):
    """Failed logins per user name (existing or not), for the lock after too many wrong passwords."""

    username = CharField(max_length=50, primary_key=True)
    failures = IntegerField(default=0)  # wrong passwords in the window
    last_failure_at = DateTimeField(null=True)  # the window's last attempt
    locked_until = DateTimeField(null=True)
    # Attempts whose password is being checked now (see users.reserve_attempt).
    pending = IntegerField(default=0, constraints=[SQL("DEFAULT 0")])

    class Meta:
        table_name = "t_login_throttle"


class CustomerType(BaseModel):
    """A customer category such as VIP客户 or 普通客户, with an optional member discount."""

    name = CharField(max_length=50, unique=True)
    description = CharField(max_length=200, default="")
    discount = SmallIntegerField(null=True)  # percent charged: 95 means 9.5折; NULL: none
    created_at = DateTimeField(default=now)
    updated_at = DateTimeField(default=now)

    class Meta:
        table_name = "t_customer_type"


class Customer(BaseModel):
    """A shop customer."""

    customer_no = CharField(max_length=20, unique=True)
    name = CharField(max_length=50, index=True)
    gender = CharField(max_length=4, default="未知")
    phone = CharField(max_length=20, unique=True)
    address = CharField(max_length=200, default="")
    type = ForeignKeyField(CustomerType, null=True, backref="customers", column_name="type_id")
    birthday = DateField(null=True)
    remark = CharField(max_length=500, default="")
    archived = BooleanField(default=False)
    created_by = ForeignKeyField(User, null=True, column_name="created_by")
    created_at = DateTimeField(default=now, index=True)
    updated_at = DateTimeField(default=now)
    last_visit_at = DateTimeField(null=True)
    # lower(name)|phone|customer_no (make_search_text), searched byte-wise (migration 0003).
    # Every writer of a name, phone or number sets it and re-indexes crm.search_index.CustomerGram
    # in the same transaction: customers.create_customer / update_customer, the import, the demo
    # data; so does every writer of a card (its number is found too: card_common._create_card,
    # the import, the demo data), under the customer's row lock; a restore brings the index in
    # line (CustomerGram.follow). No save() does it behind them.
    search_text = CharField(max_length=120, default="")

    class Meta:
        table_name = "t_customer"
        indexes = (
            (("archived", "search_text", "type"), False),
            (("archived", "last_visit_at", "search_text", "type"), False),
        )

    @staticmethod
    def make_search_text(name, phone, customer_no):
        """What the search box is matched against."""
        return f"{(name or '').lower()}|{phone or ''}|{customer_no or ''}"

    @classmethod
    def search(cls, q="", type_id=None, archived=False):
        """Customers whose name, phone or number contains q (one indexed column, see
        search_text), or one of whose card numbers does (three characters or more)."""
        from crm.search_index import CustomerGram  # the index's own module (it derives from us)

        query = cls.select()
        # "|" would span fields.
        q = (q or "").strip().lower().replace("|", "")
        if q:
            # The index narrows the customers down to those holding every piece of q (a few
            # entries each, see CustomerGram); the text itself is then compared on those only.
            # peewee escapes % and _, so typed wildcards match literally.
            pieces = CustomerGram.pieces(q) or ()
            for number, gram in enumerate(pieces):
                piece = CustomerGram.alias(f"g{number}")
                query = query.join(piece, on=((piece.customer_id == cls.id)
                                              & (piece.gram == gram))).switch(cls)
            found = cls.search_text.contains(q)
            if len(q) >= 3 and pieces:  # card numbers: only among the index's few candidates
                found |= fn.EXISTS(Card.select(SQL("1")).where(
                    (Card.customer == cls.id) & fn.LOWER(Card.card_no).contains(q)))
            query = query.where(found)
        if type_id:
            query = query.where(cls.type == type_id)
        if archived is not None:
            query = query.where(cls.archived == bool(archived))
        return query


class Card(BaseModel):
    """A stored-value member card. money = paid_money + bonus_money, all in fen; chain_head is
    the HMAC of the card's newest ledger entry; owner_seal binds its number and customer."""

    STATUSES = {"active": "正常", "frozen": "冻结", "lost": "挂失", "closed": "注销"}

    card_no = CharField(max_length=32, unique=True)
    customer = ForeignKeyField(Customer, backref="cards", column_name="customer_id")
    status = CharField(max_length=10, default="active")
    money = BigIntegerField(default=0)
    paid_money = BigIntegerField(default=0)
    bonus_money = BigIntegerField(default=0)
    entry_count = IntegerField(default=0)
    chain_head = CharField(max_length=64, default="")
    remark = CharField(max_length=200, default="")
    created_by = ForeignKeyField(User, null=True, column_name="created_by")
    # HMAC of the card's id, number and customer (crm.services.ledger.owner_seal, migration 0010).
    owner_seal = CharField(max_length=64, default="", constraints=[SQL("DEFAULT ''")])
    created_at = DateTimeField(default=now)
    updated_at = DateTimeField(default=now)
    closed_at = DateTimeField(null=True)

    class Meta:
        table_name = "t_card"


class CardRecord(BaseModel):
    """One ledger entry of a card (append-only). amount is signed: money in positive, out
    negative; paid_delta + bonus_delta = amount. seq numbers a card's entries 1, 2, 3 … and
    prev_hash/hash chain them."""

    # Their indexes are the composite ones below (see migration 0007).
    card = ForeignKeyField(Card, backref="records", column_name="card_id", index=False)
    customer = ForeignKeyField(Customer, column_name="customer_id", index=False)
    seq = IntegerField()
    business_type = CharField(max_length=20)
    amount = BigIntegerField()
    paid_delta = BigIntegerField(default=0)
    bonus_delta = BigIntegerField(default=0)
    balance_after = BigIntegerField()
    paid_after = BigIntegerField()
    bonus_after = BigIntegerField()
    payment_method = CharField(max_length=10, default="")
    reverses = ForeignKeyField("self", null=True, column_name="reverses_id", unique=True)
    operator = ForeignKeyField(User, column_name="operator_id")
    request_id = CharField(max_length=64, default="", index=True)
    remark = CharField(max_length=200, default="")
    created_at = DateTimeField(default=now)
    prev_hash = CharField(max_length=64)
    hash = CharField(max_length=64)

    class Meta:
        table_name = "t_card_record"
        indexes = (
            (("card", "seq"), True),
            (("customer", "created_at"), False),
            (("created_at", "business_type", "customer", "amount"), False),  # reports
        )


class ConsumeRecord(BaseModel):
    """One consumption (append-only): the original amount, the discount and what was charged."""

    card = ForeignKeyField(Card, column_name="card_id")
    customer = ForeignKeyField(Customer, column_name="customer_id", index=False)
    card_record = ForeignKeyField(CardRecord, unique=True, column_name="card_record_id")
    original_amount = BigIntegerField()
    discount = SmallIntegerField(null=True)
    amount = BigIntegerField()
    balance_after = BigIntegerField()
    operator = ForeignKeyField(User, column_name="operator_id")
    request_id = CharField(max_length=64, default="")
    remark = CharField(max_length=200, default="")
    created_at = DateTimeField(default=now)

    class Meta:
        table_name = "t_consume_record"
        indexes = ((("customer", "created_at"), False),
                   (("created_at", "customer", "amount"), False))  # reports


class IdempotencyKey(BaseModel):
    """A money request already carried out, stored in the money's own transaction, so that the
    same key again returns the first answer and moves nothing."""

    key = CharField(max_length=64, unique=True)
    user = ForeignKeyField(User, column_name="user_id")
    fingerprint = CharField(max_length=64)
    status_code = SmallIntegerField()
    response = TextField()
    created_at = DateTimeField(default=now)

    class Meta:
        table_name = "t_idempotency_key"


class AuditLog(BaseModel):
    """Who did what, when, from where (append-only)."""

    created_at = DateTimeField(default=now, index=True)
    user = ForeignKeyField(User, null=True, column_name="user_id")
    username = CharField(max_length=50, default="")
    ip = CharField(max_length=45, default="")
    action = CharField(max_length=50, index=True)
    object_type = CharField(max_length=30, default="")
    object_id = CharField(max_length=50, default="")
    detail = TextField(default="")  # JSON: {"before": {...}, "after": {...}} or free facts

    class Meta:
        table_name = "t_audit_log"


class RechargeRule(BaseModel):
    """充 min_amount 送 bonus (fen): the largest rule a recharge reaches applies."""

    min_amount = BigIntegerField()
    bonus = BigIntegerField()
    active = BooleanField(default=True)
    created_by = IntegerField(null=True)
    created_at = DateTimeField(default=now)

    class Meta:
        table_name = "t_recharge_rule"


class Counter(BaseModel):
    """A named number that only goes up (customer numbers)."""

    name = CharField(max_length=30, primary_key=True)
    value = BigIntegerField(default=0)

    class Meta:
        table_name = "t_counter"

    @classmethod
    def take(cls, name, count=1):
        """Reserve `count` numbers in the caller's transaction; return the first of them."""
        # The UPDATE takes the row lock, so no one else gets the same numbers before we commit.
        cls.update(value=cls.value + count).where(cls.name == name).execute()
        return cls.get_by_id(name).value - count + 1


class RestoreMode(BaseModel):
    """Holds a row only inside a restoring transaction: the append-only DELETE guards let rows go
    only then (see migration 0006)."""

    id = IntegerField(primary_key=True)

    class Meta:
        table_name = "t_restore_mode"


class RestoreHold(BaseModel):
    """One row: while held_until lies ahead, a restore holds every money call (crm.services.hold,
    migration 0009). Never backed up, never restored."""

    id = IntegerField(primary_key=True)
    held_until = DateTimeField(null=True)
    holder = CharField(max_length=100, default="")

    class Meta:
        table_name = "t_restore_hold"


# Every table's model but the search index's, which lives in crm.search_index (all_models()).
ALL_MODELS = (
    User,
    AuthToken,
    LoginThrottle,
    CustomerType,
    Customer,
    Card,
    CardRecord,
    ConsumeRecord,
    IdempotencyKey,
    AuditLog,
    Counter,
    RechargeRule,
    RestoreMode,
    RestoreHold,
)

# Tables whose rows are never changed or removed once written; the database refuses it.
APPEND_ONLY_TABLES = ("t_card_record", "t_consume_record", "t_audit_log")


def all_models():
    """Every table's model, the search index's (crm.search_index.CustomerGram) included."""
    from crm.search_index import CustomerGram

    return (*ALL_MODELS, CustomerGram)
