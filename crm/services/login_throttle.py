"""The login throttle (t_login_throttle): before a password — or the first-run setup code — is
checked, the attempt holds a place for its name; wrong secrets of a window plus checks in flight
never pass the limit, and the name is locked for a while when it is reached. Logins and the old
password on the password page (crm.services.users) and the setup page use it."""
import datetime
import hmac
import time

from peewee import IntegrityError, OperationalError

from crm.clock import now
from crm.db import DEADLOCK, db
from crm.errors import AuthError, Forbidden
from crm.models import LoginThrottle


class Settings:
    """The throttle's rules in force; crm.services.users.configure sets them at start."""

    max_failures = 5
    lock_minutes = 15


def configure(config):
    """Take the throttle's rules from the app configuration."""
    Settings.max_failures = int(config["LOGIN_MAX_FAILURES"])
    Settings.lock_minutes = int(config["LOGIN_LOCK_MINUTES"])


def _ensure_throttle_row(name):
    """Make the name's throttle row if missing, in a transaction of its own: on MySQL a
    duplicate-key INSERT inside the locking transaction holds a shared lock that deadlocks two
    attempts arriving together (1213)."""
    if not LoginThrottle.select().where(LoginThrottle.username == name).exists():
        try:
            with db.atomic():
                LoginThrottle.create(username=name, failures=0)
        except IntegrityError:  # a parallel attempt made it first
            pass


def _locked_throttle_row(name):
    """The name's throttle row, write-locked for the caller's transaction (a no-op UPDATE takes
    the row lock on MySQL; SQLite's write transaction is exclusive); None if a right password
    removed it meanwhile."""
    (LoginThrottle.update(failures=LoginThrottle.failures)
     .where(LoginThrottle.username == name).execute())
    return LoginThrottle.get_or_none(LoginThrottle.username == name)


DEADLOCK_TRIES = 50


def _again_on_deadlock(work):
    """Run work() until it neither is MySQL's deadlock victim (1213: logins of one name arriving
    together lock, delete and re-make its one row, and MySQL may pick any of them to roll back)
    nor returns None ("the row went meanwhile: again"). One budget of DEADLOCK_TRIES for both;
    then a polite 429, never a 503."""
    for attempt in range(DEADLOCK_TRIES):
        try:
            done = work()
        except OperationalError as error:
            if not (error.args and error.args[0] == DEADLOCK):
                raise
            time.sleep(0.005 * (attempt + 1))
            continue
        if done is not None:
            return done
    raise AuthError("登录请求太多，请稍后再试", code="login_busy", status=429)


def _with_throttle_row(name, change):
    """Run change(row) in one transaction on the name's locked throttle row; again when MySQL
    picks it as a deadlock victim, or when a right password removed the row meanwhile."""
    def once():
        _ensure_throttle_row(name)
        with db.atomic():
            row = _locked_throttle_row(name)
            return None if row is None else (change(row),)

    return _again_on_deadlock(once)[0]


STALE_CHECK_SECONDS = 30  # a check in flight longer than this died with its process


def _place(row, stamp, window, limit):
    """The name's state as `row` says: (state, failures, pending, new window) with state
    "locked", "busy" (every place taken by checks in flight) or "free"; failures and pending as
    they count now (a window that ended counts nothing, a check in flight too long is dead)."""
    if row.locked_until and row.locked_until > stamp:
        return "locked", row.failures, row.pending, False
    failures, pending, new_window = row.failures, row.pending, False
    if row.locked_until or not row.last_failure_at or row.last_failure_at <= stamp - window:
        failures, pending, new_window = 0, 0, True
    elif row.last_failure_at <= stamp - datetime.timedelta(seconds=STALE_CHECK_SECONDS):
        pending = 0
    return ("busy" if failures + pending >= limit else "free"), failures, pending, new_window


def reserve_attempt(name, limit=None, minutes=None):
    """Hold a place for one attempt of `name` before its secret is checked, atomically: wrong
    secrets of a window plus checks in flight never pass `limit`, so at most `limit` wrong
    secrets are ever checked for a name in its window, however many arrive at once. Returns
    ("ok", n) with the attempt's number in its window, ("locked", until) or ("busy", None)
    when every place is taken by checks in flight (the caller waits a moment). A locked or full
    name is answered from a plain read: refused attempts never take SQLite's write lock (a
    flood of them would otherwise queue the till behind it)."""
    limit = limit or Settings.max_failures
    window = datetime.timedelta(minutes=minutes or Settings.lock_minutes)
    stamp = now()
    seen = LoginThrottle.get_or_none(LoginThrottle.username == name)
    if seen is not None:
        state = _place(seen, stamp, window, limit)[0]
        if state != "free":
            return state, seen.locked_until if state == "locked" else None
    began = []

    def hold_place(row):
        state, failures, pending, new_window = _place(row, stamp, window, limit)
        if state != "free":
            return state, row.locked_until if state == "locked" else None
        if new_window:
            began.append(True)
        (LoginThrottle.update(failures=failures, pending=pending + 1, last_failure_at=stamp,
                              locked_until=None)
         .where(LoginThrottle.username == name).execute())
        return "ok", failures + pending + 1

    answer = _with_throttle_row(name, hold_place)
    if began:
        _forget_ended_windows(stamp)
    return answer


def _forget_ended_windows(stamp):
    """Remove the rows of windows that ended (housekeeping, outside any name's lock): the
    longest window of any throttle, so a short login window never ends the setup code's."""
    oldest = stamp - datetime.timedelta(minutes=max(Settings.lock_minutes, SETUP_LOCK_MINUTES))
    try:
        (LoginThrottle.delete()
         .where((LoginThrottle.last_failure_at <= oldest) & (LoginThrottle.pending == 0)
                & (LoginThrottle.locked_until.is_null() | (LoginThrottle.locked_until <= stamp)))
         .execute())
    except OperationalError:
        pass  # busy elsewhere: the next new window tries again


def record_failure(name, limit=None, minutes=None):
    """The attempt's secret was wrong: count it, give back its place, lock the name at the
    limit. Returns the failures of the window and whether this one locked the name."""
    limit = limit or Settings.max_failures
    stamp = now()

    def count(row):
        failures = row.failures + 1
        locked = failures >= limit
        (LoginThrottle.update(
            failures=failures, pending=max(0, row.pending - 1), last_failure_at=stamp,
            locked_until=stamp + datetime.timedelta(minutes=minutes or Settings.lock_minutes)
            if locked else row.locked_until)
         .where(LoginThrottle.username == name).execute())
        return failures, locked

    return _with_throttle_row(name, count)


def _wait_for_place(name, limit=None, minutes=None, seconds=5.0):
    """reserve_attempt, waiting while every place is taken by checks in flight (right passwords
    of one name arriving together); ("busy", None) if none frees within `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        state, value = reserve_attempt(name, limit, minutes)
        if state != "busy" or time.monotonic() > deadline:
            return state, value
        time.sleep(0.05)


def _login_place(name):
    """A place for one password check of `name` (a login, or the old password on the password
    page), waiting while checks in flight hold them all; its number in the window, or 429."""
    state, value = _wait_for_place(name)
    if state == "locked":
        raise AuthError(locked_message(value), code="login_locked", status=429)
    if state == "busy":
        raise AuthError("同一用户名的登录请求太多，请稍后再试", code="login_busy", status=429)
    return value


def forget_attempts(name):
    """A right password (or setup code): the name's attempts start afresh (retried when MySQL
    picks the delete as a deadlock victim of logins of the same name arriving together). Call
    it outside any transaction: MySQL's deadlock rolls back the whole transaction, and only the
    delete would be run again."""
    assert not db.in_transaction(), "forget_attempts inside a transaction"
    _again_on_deadlock(
        lambda: LoginThrottle.delete().where(LoginThrottle.username == name).execute())


def locked_message(until, what="密码错误次数过多，该用户名已锁定"):
    """The Chinese answer while a name is locked, with the minutes left."""
    minutes = max(1, int((until - now()).total_seconds() + 59) // 60)
    return f"{what}，请 {minutes} 分钟后再试"


SETUP_THROTTLE = "#setup"  # not a user name ('#' is not allowed in one)
SETUP_TRIES, SETUP_LOCK_MINUTES = 5, 15


def check_setup_code(typed, expected):
    """The first-run setup code typed on another PC: None when right, else the refusal to show
    (403 wrong, 429 locked). A few wrong codes lock the setup page for a while, so the six digits
    cannot be tried through; each try is counted before the code is compared."""
    state, value = _wait_for_place(SETUP_THROTTLE, SETUP_TRIES, SETUP_LOCK_MINUTES)
    if state != "ok":
        return AuthError(locked_message(value, "初始化码输错次数过多，初始化页面已锁定")
                         + "（在运行本系统的电脑上打开此页不受影响）" if state == "locked"
                         else "初始化请求太多，请稍后再试", code="setup_locked", status=429)
    if hmac.compare_digest((typed or "").strip().encode(), expected.encode()):
        forget_attempts(SETUP_THROTTLE)
        return None
    record_failure(SETUP_THROTTLE, SETUP_TRIES, SETUP_LOCK_MINUTES)
    return Forbidden("初始化码不正确。请在运行本系统的电脑上打开此页，或输入启动窗口里显示的初始化码。",
                     code="wrong_setup_code")
