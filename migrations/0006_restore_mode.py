"""Restores replace the append-only tables whole, inside one transaction. The DELETE guards now let
a row go only while t_restore_mode holds a row — which only the restoring transaction ever sees
(it inserts one at its start and removes it before it commits). UPDATE stays refused always.
DDL cannot be part of that transaction on MySQL (it commits), hence a flag table, not dropped
triggers."""
from peewee import IntegerField, Model, MySQLDatabase

APPEND_ONLY = ("t_card_record", "t_consume_record", "t_audit_log")


def _delete_guard(db, table):
    name = f"{table}_no_delete"
    message = f"{table} is append-only: DELETE refused"
    if isinstance(db, MySQLDatabase):
        return (f"CREATE TRIGGER {name} BEFORE DELETE ON {table} FOR EACH ROW "
                f"BEGIN IF NOT EXISTS (SELECT 1 FROM t_restore_mode) THEN "
                f"SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = '{message}'; END IF; END")
    return (f"CREATE TRIGGER {name} BEFORE DELETE ON {table} "
            f"WHEN NOT EXISTS (SELECT 1 FROM t_restore_mode) "
            f"BEGIN SELECT RAISE(ABORT, '{message}'); END")


def up(migrator, db):
    """Create t_restore_mode and re-create the three DELETE guards; safe to re-run."""

    class RestoreMode(Model):
        id = IntegerField(primary_key=True)

        class Meta:
            table_name = "t_restore_mode"
            database = db
            if isinstance(db, MySQLDatabase):
                table_settings = ["ENGINE=InnoDB"]

    db.create_tables([RestoreMode], safe=True)
    for table in APPEND_ONLY:
        db.execute_sql(f"DROP TRIGGER IF EXISTS {table}_no_delete")
        db.execute_sql(_delete_guard(db, table))
