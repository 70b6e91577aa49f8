"""Counters that hand out numbers (customer numbers) without gaps from concurrent inserts."""
from peewee import BigIntegerField, CharField, Model, MySQLDatabase


def up(migrator, db):
    """Create t_counter with its customer-number row; safe to re-run."""

    class Counter(Model):
        name = CharField(max_length=30, primary_key=True)
        value = BigIntegerField(default=0)

        class Meta:
            table_name = "t_counter"
            database = db
            if isinstance(db, MySQLDatabase):
                table_settings = ["ENGINE=InnoDB", "DEFAULT CHARSET=utf8mb4",
                                  "COLLATE=utf8mb4_unicode_ci"]

    db.create_tables([Counter], safe=True)
    if not Counter.select().where(Counter.name == "customer").exists():
        Counter.create(name="customer", value=0)
