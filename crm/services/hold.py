"""The restore hold. From the moment a restore's safety backup starts until the restore commits,
every money call in every server process is refused at once (503, "正在恢复数据，请稍候"), so that
no charge can fall between the safety backup and the replaced data.

How it is atomic: the hold is one row (t_restore_hold, id 1) that always exists. Every money
transaction reads it first thing, under a shared lock on MySQL (LOCK IN SHARE MODE) and inside
its write transaction on SQLite (whose writers take turns). Setting the hold is an UPDATE of
that row in a transaction of its own, so it waits for every money transaction already under way;
once it has committed, every money transaction sees it. A money transaction therefore either
committed before the hold (and the safety backup, which starts after it, holds it) or is refused.
The restore releases the hold inside its own transaction, so money resumes on the restored data
the moment it commits. The hold is a lease (HOLD_MINUTES, renewed when the load starts): a
restore whose process dies cannot stop the till for longer than that.

Requests are also refused before they reach a service while the hold is on (crm.web), with a
plain read that never waits: on SQLite a money call would otherwise queue behind the restore's
write lock.
"""
import contextlib
import datetime
import os
import socket
import uuid

from crm.clock import as_text, now
from crm.db import db, is_mysql
from crm.errors import Conflict, Unavailable

HOLD_MINUTES = 15
MESSAGE = "正在恢复数据，请稍候：恢复完成后（通常不到一分钟）请重新提交"


def _until(value):
    """held_until as a datetime (SQLite hands back text)."""
    if isinstance(value, str):
        return datetime.datetime.fromisoformat(value[:19])
    return value


def _read(database, locking):
    sql = "SELECT held_until FROM t_restore_hold WHERE id = 1"
    if locking and is_mysql(database):
        sql += " LOCK IN SHARE MODE"
    row = database.execute_sql(sql).fetchone()
    return row is not None and row[0] is not None and _until(row[0]) > now()


def refuse_while_held(database=None):
    """Raise Unavailable while a restore holds money: in a money transaction, before anything
    moves (the shared lock makes a restore's hold wait for this transaction)."""
    if _read(database or db.obj, locking=True):
        raise Unavailable(MESSAGE, code="restore_in_progress")


def held(database=None):
    """True while a restore holds money (a plain read, never waits): for request checks."""
    return _read(database or db.obj, locking=False)


def _set(database, holder, until, expect_free):
    p = database.param
    sql = f"UPDATE t_restore_hold SET held_until = {p}, holder = {p} WHERE id = 1"
    args = [as_text(until), holder]
    if expect_free:
        sql += f" AND (held_until IS NULL OR held_until <= {p} OR holder = {p})"
        args += [as_text(now()), holder]
    else:
        sql += f" AND holder = {p}"
        args.append(holder)
    return database.execute_sql(sql, args).rowcount


class Hold:
    """A hold taken by `holding()`: renew() it as a long phase starts; release(database) it
    inside the transaction that ends it."""

    def __init__(self, database):
        self.database = database
        self.holder = f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"

    def take(self):
        with self.database.atomic():
            taken = _set(self.database, self.holder, now() + datetime.timedelta(
                minutes=HOLD_MINUTES), expect_free=True)
        if not taken:
            raise Conflict("另一个恢复正在进行，请稍后再试", code="backup_busy")

    def renew(self):
        """The lease starts again (a long restore's second phase)."""
        with self.database.atomic():
            _set(self.database, self.holder, now() + datetime.timedelta(minutes=HOLD_MINUTES),
                 expect_free=False)

    def release(self):
        """Let money move again; inside the restore's transaction it commits with it."""
        p = self.database.param
        self.database.execute_sql("UPDATE t_restore_hold SET held_until = NULL, holder = '' "
                                  f"WHERE id = 1 AND holder = {p}", (self.holder,))


@contextlib.contextmanager
def holding(database=None):
    """Hold every money call while the block runs; yields the Hold. Released at the end in any
    case (a restore releases it in its own transaction first)."""
    hold = Hold(database or db.obj)
    hold.take()
    try:
        yield hold
    finally:
        with hold.database.atomic():
            hold.release()
