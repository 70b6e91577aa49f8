"""t_login_throttle.pending: the attempts of a name whose password is being checked right now.
Failures (`failures`) lock a name; checks in flight only hold a place: at most the limit of
passwords is checked for a name at once, and right passwords arriving together wait for a
place instead of locking the name (issue 17.1)."""
from peewee import SQL, IntegerField, MySQLDatabase


def up(migrator, db):
    """Add t_login_throttle.pending (default 0); safe to re-run."""
    if not any(c.name == "pending" for c in db.get_columns("t_login_throttle")):
        migrator.migrate(migrator.add_column("t_login_throttle", "pending", IntegerField(
            default=0, constraints=[SQL("DEFAULT 0")])))
    if isinstance(db, MySQLDatabase):  # peewee's add_column drops the database default
        db.execute_sql("ALTER TABLE t_login_throttle MODIFY pending INT NOT NULL DEFAULT 0")
