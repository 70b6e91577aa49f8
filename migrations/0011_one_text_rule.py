"""One rule per text column on both databases (design rule 11, crm/services/names.py).

First the stored names are brought to their one form: user names NFKC and case-folded, type
names NFKC. If two stored names would become one (users `Boss` and `boss` on SQLite), the
upgrade stops before changing anything and names them with the command that renames one.

Then, on MySQL, every table is converted to binary text without padding (utf8mb4_nopad_bin on
MariaDB, utf8mb4_0900_bin on MySQL 8: crm.db.binary_collation): text compares byte for byte there
as it does on SQLite, trailing spaces included, so `CASE-CARD-1` and `case-card-1` are two cards on both and a SQLite backup
restores into MySQL. The conversion rebuilds each table once (about a minute per million ledger
entries on a small PC); a table already converted is skipped, so the step is safe to re-run.
"""
from peewee import MySQLDatabase


def up(migrator, db):
    """Store every name in its one form, then make MySQL's text binary; safe to re-run."""
    from crm.services import names

    names.store_forms(db)  # raises NamesClash (nothing changed) when names would merge
    if not isinstance(db, MySQLDatabase):
        return  # SQLite compares text byte for byte already
    from crm.db import binary_collation

    collation = binary_collation(db)
    tables = db.execute_sql(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE() "
        "AND table_type = 'BASE TABLE' AND table_collation <> %s", (collation,)).fetchall()
    columns = db.execute_sql(
        "SELECT DISTINCT c.table_name FROM information_schema.columns c "
        "JOIN information_schema.tables t ON t.table_schema = c.table_schema "
        "AND t.table_name = c.table_name WHERE c.table_schema = DATABASE() "
        "AND t.table_type = 'BASE TABLE' AND c.collation_name <> %s", (collation,)).fetchall()
    for (table,) in sorted(set(tables) | set(columns)):
        db.execute_sql(f"ALTER TABLE `{table}` CONVERT TO CHARACTER SET utf8mb4 "
                       f"COLLATE {collation}")
