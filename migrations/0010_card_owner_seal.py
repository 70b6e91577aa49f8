"""The ownership seal (t_card.owner_seal): every card's id, number and customer sealed with the
ledger key, so that a card moved to another customer or renumbered in the database is named by
`crm verify`. Cards made before this migration are sealed here with the owner and number they
have now (their ledger chains are never rewritten); from then on verify holds them to it."""
from peewee import SQL, CharField, MySQLDatabase


def _has_column(db, table, column):
    return any(c.name == column for c in db.get_columns(table))


def up(migrator, db):
    """Add t_card.owner_seal and seal the cards that have none; safe to re-run."""
    if not _has_column(db, "t_card", "owner_seal"):
        # A default in the database too: rows inserted by hand or by older code get '' (which
        # verify then names as unsealed), never an error.
        migrator.migrate(migrator.add_column("t_card", "owner_seal", CharField(
            max_length=64, default="", constraints=[SQL("DEFAULT ''")])))
    if isinstance(db, MySQLDatabase):  # peewee's add_column sets NOT NULL and drops the default
        db.execute_sql("ALTER TABLE t_card MODIFY owner_seal VARCHAR(64) NOT NULL DEFAULT ''")
    # The seal rule lives in one place; the key is the instance's (or, for a backup being
    # checked, the key it is checked with: ledger.sealing_with).
    from crm.services import ledger

    ledger.seal_owners(database=db)
