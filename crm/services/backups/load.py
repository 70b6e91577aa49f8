"""Backups: loading rows into a database in one transaction (a scratch copy or, for a restore,
the shop's own), from a backup's zip or from a checked scratch database."""
import hashlib
import json

from crm import db as crm_db
from crm.models import Card, Customer
from crm.search_index import CustomerGram
from crm.services.backups.common import (
    MAX_LINE_BYTES,
    NOT_CARRIED,
    TABLES,
    BackupError,
    _columns,
    _table_name,
)


def _rows(archive, table, manifest):
    """The table's rows from the zip, checking the sha256 and the count as they stream by."""
    expected = manifest["tables"][table]
    digest, count = hashlib.sha256(), 0
    columns = expected["columns"]
    with archive.open(f"{table}.jsonl") as member:
        while line := member.readline(MAX_LINE_BYTES + 1):
            if len(line) > MAX_LINE_BYTES:
                raise BackupError(f"备份文件已损坏：{table} 中有过长的一行", code="backup_corrupt")
            digest.update(line)
            count += 1
            values = json.loads(line)
            yield dict(zip(columns, values, strict=True)) if isinstance(values, list) else values
    if digest.hexdigest() != expected["sha256"] or count != expected["rows"]:
        raise BackupError(f"备份文件已损坏：{table} 的内容与清单不符（可能被改动或不完整）",
                          code="backup_corrupt")


def _load(database, source, fresh=False, before_commit=None):
    """Replace every carried table of `database` with the rows from `source` — an iterable of
    (model, columns, rows) — in one transaction: all or nothing. `fresh`: a new, empty scratch
    database (perhaps at an older schema, without t_restore_mode), nothing to empty.
    `before_commit()` runs last inside the transaction; if it fails, nothing is replaced."""
    mysql = crm_db.is_mysql(database)
    param = database.param
    with database.atomic():
        if mysql:
            # Rows from a checked backup of a consistent database: InnoDB may skip re-checking
            # foreign and unique keys row by row (both back on before the commit).
            database.execute_sql("SET FOREIGN_KEY_CHECKS = 0")
            database.execute_sql("SET UNIQUE_CHECKS = 0")
        else:
            database.execute_sql("PRAGMA defer_foreign_keys = ON")
        try:
            present = set(database.get_tables())
            indexed = None
            if not fresh:
                database.execute_sql("INSERT INTO t_restore_mode (id) VALUES (1)")
                with database.bind_ctx([CustomerGram, Customer, Card]):
                    indexed = CustomerGram.indexed()
            for model in (*reversed(TABLES), *NOT_CARRIED):
                # A fresh scratch database holds only what migrations seed (t_counter's rows).
                if _table_name(model) in present:
                    database.execute_sql(f"DELETE FROM {_table_name(model)}")
            for model, columns, rows in source:
                # The target's own columns: a scratch database may be at an older schema.
                known = {c.name for c in database.get_columns(_table_name(model))}
                keep = [c for c in columns if c in known]
                statement = (f"INSERT INTO {_table_name(model)} ({crm_db.column_list(database, keep)}) "
                             f"VALUES ({', '.join([param] * len(keep))})")
                crm_db.executemany(database, statement,
                                   (tuple(row[c] for c in keep) for row in rows))
            if not fresh:
                with database.bind_ctx([CustomerGram, Customer, Card]):
                    CustomerGram.follow(indexed)
                database.execute_sql("DELETE FROM t_restore_mode")
            if before_commit is not None:
                before_commit()
        finally:
            if mysql:
                database.execute_sql("SET UNIQUE_CHECKS = 1")
                database.execute_sql("SET FOREIGN_KEY_CHECKS = 1")


def _from_zip(archive, manifest, database):
    present = set(database.get_tables())
    for model in TABLES:
        table = _table_name(model)
        if table in manifest["tables"] and table in present:
            yield model, manifest["tables"][table]["columns"], _rows(archive, table, manifest)


def _from_database(database):
    for model in TABLES:
        columns = _columns(model)
        cursor = database.execute_sql(f"SELECT {crm_db.column_list(database, columns)} "
                                      f"FROM {_table_name(model)}")
        yield model, columns, (dict(zip(columns, row, strict=True)) for row in cursor)
