"""Initial schema: users and logins, customers and types, cards and the append-only ledger, audit.

A frozen copy of the tables as they were at this migration, deliberately independent of
crm/models.py: later migrations change the tables, this file never changes.
"""
import datetime

from peewee import (
    BigIntegerField,
    BooleanField,
    CharField,
    DateField,
    DateTimeField,
    ForeignKeyField,
    IntegerField,
    Model,
    MySQLDatabase,
    SmallIntegerField,
    TextField,
)

APPEND_ONLY = ("t_card_record", "t_consume_record", "t_audit_log")


def _now():
    return datetime.datetime.now().replace(microsecond=0)


def _tables(database):
    class Base(Model):
        class Meta:
            legacy_table_names = False

    class User(Base):
        username = CharField(max_length=50, unique=True)
        display_name = CharField(max_length=50, default="")
        password_hash = CharField(max_length=100)
        role = CharField(max_length=10, default="operator")
        active = BooleanField(default=True)
        permissions = TextField(default="")
        created_at = DateTimeField(default=_now)
        updated_at = DateTimeField(default=_now)
        last_login_at = DateTimeField(null=True)

        class Meta:
            table_name = "t_user"

    class AuthToken(Base):
        user = ForeignKeyField(User, on_delete="CASCADE")
        kind = CharField(max_length=10)
        token_hash = CharField(max_length=64, unique=True)
        created_at = DateTimeField(default=_now)
        expires_at = DateTimeField()
        last_used_at = DateTimeField(default=_now)
        revoked_at = DateTimeField(null=True)
        ip = CharField(max_length=45, default="")
        user_agent = CharField(max_length=200, default="")

        class Meta:
            table_name = "t_auth_token"

    class LoginThrottle(Base):
        username = CharField(max_length=50, primary_key=True)
        failures = IntegerField(default=0)
        last_failure_at = DateTimeField(null=True)
        locked_until = DateTimeField(null=True)

        class Meta:
            table_name = "t_login_throttle"

    class CustomerType(Base):
        name = CharField(max_length=50, unique=True)
        description = CharField(max_length=200, default="")
        discount = SmallIntegerField(null=True)
        created_at = DateTimeField(default=_now)
        updated_at = DateTimeField(default=_now)

        class Meta:
            table_name = "t_customer_type"

    class Customer(Base):
        customer_no = CharField(max_length=20, unique=True)
        name = CharField(max_length=50, index=True)
        gender = CharField(max_length=4, default="未知")
        phone = CharField(max_length=20, unique=True)
        address = CharField(max_length=200, default="")
        type = ForeignKeyField(CustomerType, null=True, column_name="type_id")
        birthday = DateField(null=True)
        remark = CharField(max_length=500, default="")
        archived = BooleanField(default=False, index=True)
        created_by = ForeignKeyField(User, null=True, column_name="created_by")
        created_at = DateTimeField(default=_now, index=True)
        updated_at = DateTimeField(default=_now)
        last_visit_at = DateTimeField(null=True, index=True)

        class Meta:
            table_name = "t_customer"

    class Card(Base):
        card_no = CharField(max_length=32, unique=True)
        customer = ForeignKeyField(Customer, column_name="customer_id")
        status = CharField(max_length=10, default="active")
        money = BigIntegerField(default=0)
        paid_money = BigIntegerField(default=0)
        bonus_money = BigIntegerField(default=0)
        entry_count = IntegerField(default=0)
        chain_head = CharField(max_length=64, default="")
        remark = CharField(max_length=200, default="")
        created_by = ForeignKeyField(User, null=True, column_name="created_by")
        created_at = DateTimeField(default=_now)
        updated_at = DateTimeField(default=_now)
        closed_at = DateTimeField(null=True)

        class Meta:
            table_name = "t_card"

    class CardRecord(Base):
        card = ForeignKeyField(Card, column_name="card_id")
        customer = ForeignKeyField(Customer, column_name="customer_id")
        seq = IntegerField()
        business_type = CharField(max_length=20)
        amount = BigIntegerField()
        paid_delta = BigIntegerField(default=0)
        bonus_delta = BigIntegerField(default=0)
        balance_after = BigIntegerField()
        paid_after = BigIntegerField()
        bonus_after = BigIntegerField()
        payment_method = CharField(max_length=10, default="")
        reverses = ForeignKeyField("self", null=True, column_name="reverses_id")
        operator = ForeignKeyField(User, column_name="operator_id")
        request_id = CharField(max_length=64, default="", index=True)
        remark = CharField(max_length=200, default="")
        created_at = DateTimeField(default=_now, index=True)
        prev_hash = CharField(max_length=64)
        hash = CharField(max_length=64)

        class Meta:
            table_name = "t_card_record"
            indexes = ((("card", "seq"), True), (("customer", "created_at"), False))

    class ConsumeRecord(Base):
        card = ForeignKeyField(Card, column_name="card_id")
        customer = ForeignKeyField(Customer, column_name="customer_id")
        card_record = ForeignKeyField(CardRecord, unique=True, column_name="card_record_id")
        original_amount = BigIntegerField()
        discount = SmallIntegerField(null=True)
        amount = BigIntegerField()
        balance_after = BigIntegerField()
        operator = ForeignKeyField(User, column_name="operator_id")
        request_id = CharField(max_length=64, default="")
        remark = CharField(max_length=200, default="")
        created_at = DateTimeField(default=_now, index=True)

        class Meta:
            table_name = "t_consume_record"
            indexes = ((("customer", "created_at"), False),)

    class IdempotencyKey(Base):
        key = CharField(max_length=64, unique=True)
        user = ForeignKeyField(User, column_name="user_id")
        fingerprint = CharField(max_length=64)
        status_code = SmallIntegerField()
        response = TextField()
        created_at = DateTimeField(default=_now)

        class Meta:
            table_name = "t_idempotency_key"

    class AuditLog(Base):
        created_at = DateTimeField(default=_now, index=True)
        user = ForeignKeyField(User, null=True, column_name="user_id")
        username = CharField(max_length=50, default="")
        ip = CharField(max_length=45, default="")
        action = CharField(max_length=50, index=True)
        object_type = CharField(max_length=30, default="")
        object_id = CharField(max_length=50, default="")
        detail = TextField(default="")

        class Meta:
            table_name = "t_audit_log"

    tables = [User, AuthToken, LoginThrottle, CustomerType, Customer, Card, CardRecord,
              ConsumeRecord, IdempotencyKey, AuditLog]
    for table in tables:
        table._meta.set_database(database)
    return tables


def _guard_sql(database, table, event):
    name = f"{table}_no_{event.lower()}"
    message = f"{table} is append-only: {event} refused"
    if isinstance(database, MySQLDatabase):
        return (f"CREATE TRIGGER IF NOT EXISTS {name} BEFORE {event} ON {table} FOR EACH ROW "
                f"SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = '{message}'")
    return (f"CREATE TRIGGER IF NOT EXISTS {name} BEFORE {event} ON {table} "
            f"BEGIN SELECT RAISE(ABORT, '{message}'); END")


def up(migrator, db):
    """Create every table (InnoDB/utf8mb4 on MySQL) and the append-only triggers; safe to re-run."""
    tables = _tables(db)
    if isinstance(db, MySQLDatabase):
        for table in tables:
            table._meta.table_settings = ["ENGINE=InnoDB", "DEFAULT CHARSET=utf8mb4",
                                          "COLLATE=utf8mb4_unicode_ci"]
    db.create_tables(tables, safe=True)
    for table in APPEND_ONLY:
        for event in ("UPDATE", "DELETE"):
            db.execute_sql(_guard_sql(db, table, event))
