"""The restore hold (t_restore_hold, one row): from a restore's safety backup until its commit,
every money call of every server process is refused at once. The row always exists, so that a
money transaction can take a shared lock on it and the hold, an UPDATE of it, waits for every
money transaction already under way (see crm/services/hold.py)."""
from peewee import CharField, DateTimeField, IntegerField, Model, MySQLDatabase


def up(migrator, db):
    """Create t_restore_hold with its one, released row; safe to re-run."""

    class RestoreHold(Model):
        id = IntegerField(primary_key=True)
        held_until = DateTimeField(null=True)
        holder = CharField(max_length=100, default="")

        class Meta:
            table_name = "t_restore_hold"
            database = db
            if isinstance(db, MySQLDatabase):
                table_settings = ["ENGINE=InnoDB", "DEFAULT CHARSET=utf8mb4",
                                  "COLLATE=utf8mb4_unicode_ci"]

    db.create_tables([RestoreHold], safe=True)
    if not db.execute_sql("SELECT 1 FROM t_restore_hold WHERE id = 1").fetchone():
        db.execute_sql("INSERT INTO t_restore_hold (id, held_until, holder) VALUES (1, NULL, '')")
