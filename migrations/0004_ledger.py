"""Money ledger additions: recharge rules (充500送50), a counter for card numbers, and an entry
may be reversed only once."""
import datetime

from peewee import BigIntegerField, BooleanField, DateTimeField, IntegerField, Model, MySQLDatabase


def _has_index(db, table, name):
    return any(i.name == name for i in db.get_indexes(table))


def up(migrator, db):
    """Create t_recharge_rule and the unique index on t_card_record.reverses_id; safe to re-run."""

    class RechargeRule(Model):
        min_amount = BigIntegerField()
        bonus = BigIntegerField()
        active = BooleanField(default=True)
        created_by = IntegerField(null=True)
        created_at = DateTimeField(default=datetime.datetime.now)

        class Meta:
            table_name = "t_recharge_rule"
            database = db
            if isinstance(db, MySQLDatabase):
                table_settings = ["ENGINE=InnoDB", "DEFAULT CHARSET=utf8mb4",
                                  "COLLATE=utf8mb4_unicode_ci"]

    db.create_tables([RechargeRule], safe=True)
    # Card numbers made by the system come from t_counter (0002), like customer numbers.
    if not db.execute_sql("SELECT 1 FROM t_counter WHERE name = 'card'").fetchone():
        db.execute_sql("INSERT INTO t_counter (name, value) VALUES ('card', 0)")
    # NULLs never collide in a unique index, on either database: only real reversals count.
    if not _has_index(db, "t_card_record", "t_card_record_reverses_once"):
        db.execute_sql("CREATE UNIQUE INDEX t_card_record_reverses_once ON t_card_record (reverses_id)")
