"""Customer search through an index of pieces (t_customer_gram, see crm.search_index.CustomerGram): a search
for a phone's last four digits read all 100,000 customers' search text (~40 ms on MariaDB, most of
the server's time under load); through the index it reads a few hundred entries. The table is
filled here from the customers already there; it is derived data, so re-running refills it."""
from peewee import CharField, CompositeKey, IntegerField, Model, MySQLDatabase


def up(migrator, db):
    """Create and fill t_customer_gram; safe to re-run."""

    class CustomerGram(Model):
        gram = CharField(max_length=3)
        customer_id = IntegerField()

        class Meta:
            database = db
            table_name = "t_customer_gram"
            primary_key = CompositeKey("gram", "customer_id")

    db.create_tables([CustomerGram], safe=True)
    if isinstance(db, MySQLDatabase):
        # Compared byte-wise, like search_text: pieces are lower-cased already, and "a" must
        # not find "á".
        db.execute_sql("ALTER TABLE t_customer_gram MODIFY gram VARCHAR(3) "
                       "CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL")
    # The piece rule lives in one place (it reads only id, name, phone and customer_no, which
    # every schema has). Plain statements on `db`, not the models rebound to it: a model's
    # binding is shared by every thread, and this runs on a scratch database (a backup's check)
    # while the app serves requests through the same models.
    from crm.db import executemany
    from crm.search_index import CustomerGram as Live

    rows = db.execute_sql("SELECT id, name, phone, customer_no FROM t_customer").fetchall()
    db.execute_sql("DELETE FROM t_customer_gram")
    executemany(db, f"INSERT INTO t_customer_gram (gram, customer_id) VALUES ({db.param}, "
                f"{db.param})", ((gram, row[0]) for row in rows for gram in Live.grams(*row[1:])))
