"""Card numbers join the customer search index (issue 19.1): a card number typed or scanned at
the counter, in the customer list or the statement finder finds its holder. The pieces of every
card number already there are added under the card's customer; the index is derived data, so
re-running adds nothing new."""
from peewee import MySQLDatabase


def up(migrator, db):
    """Index every card's number under its customer; safe to re-run."""
    # The piece rule lives in one place (crm.search_index.CustomerGram.grams). Plain statements
    # on `db`, not the models rebound to it: this also runs on a scratch database (a backup's
    # check) while the app serves requests through the same models.
    from crm.db import executemany
    from crm.search_index import CustomerGram as Live

    ignore = "INSERT IGNORE" if isinstance(db, MySQLDatabase) else "INSERT OR IGNORE"
    rows = db.execute_sql("SELECT customer_id, card_no FROM t_card").fetchall()
    executemany(db, f"{ignore} INTO t_customer_gram (gram, customer_id) VALUES ({db.param}, "
                f"{db.param})", ((gram, customer_id) for customer_id, card_no in rows
                                 for gram in sorted(Live.grams(card_no))))
