"""Customer search through an index of pieces (t_customer_gram, see models.CustomerGram): a search
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
    # every schema has).
    from crm.models import Customer
    from crm.models import CustomerGram as Live

    with db.bind_ctx([Live, Customer]):
        Live.rebuild()
