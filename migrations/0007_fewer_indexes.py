"""Drop indexes that others already cover: every ledger write (a consumption, a restore of a
million entries) maintains each index, and these only repeat the leading column of another.
MySQL keeps its foreign keys served by the covering index: card_id by (card_id, seq),
customer_id by (customer_id, created_at), reverses_id by the unique index of 0004."""

REDUNDANT = (
    ("t_card_record", "t_card_record_card_id"),
    ("t_card_record", "t_card_record_customer_id"),
    ("t_card_record", "t_card_record_reverses_id"),
    ("t_consume_record", "t_consume_record_customer_id"),
)


def up(migrator, db):
    """Drop the redundant indexes that are still there; safe to re-run."""
    for table, name in REDUNDANT:
        if name in {i.name for i in db.get_indexes(table)}:
            migrator.migrate(migrator.drop_index(table, name))
