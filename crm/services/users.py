"""System users, passwords, logins and their tokens, and the lock after too many wrong passwords."""
import datetime
import hashlib
import hmac
import json
import re
import secrets
import time

import bcrypt
from peewee import IntegrityError, OperationalError

from crm.clock import now
from crm.db import db
from crm.errors import AuthError, Conflict, Forbidden, NotFound, ValidationError
from crm.models import AuthToken, LoginThrottle, User
from crm.services import Actor, audit, names

USERNAME_RE = re.compile(r"^[\w.\-@]{2,50}$")
PASSWORD_MIN = 8
PASSWORD_MAX_BYTES = 72  # bcrypt reads no further; refuse rather than silently truncate

LOGIN_FAILED = "用户名或密码错误"


class Settings:
    """The login rules in force; the app sets these from its configuration at start."""

    bcrypt_rounds = 12
    max_failures = 5
    lock_minutes = 15
    session_idle_minutes = 480
    api_token_hours = 12


def configure(config):
    """Take the login rules from the app configuration."""
    Settings.bcrypt_rounds = max(int(config["BCRYPT_ROUNDS"]), 4)
    Settings.max_failures = int(config["LOGIN_MAX_FAILURES"])
    Settings.lock_minutes = int(config["LOGIN_LOCK_MINUTES"])
    Settings.session_idle_minutes = int(config["SESSION_IDLE_MINUTES"])
    Settings.api_token_hours = int(config["API_TOKEN_HOURS"])


def normalize_username(username):
    """The one form a user name is stored, looked up and unique in (NFKC, case-folded, trimmed:
    see crm.services.names), the same on both databases."""
    return names.username_key(username)


def hash_password(password):
    """Check the password rules and return its bcrypt hash."""
    if not password or len(password) < PASSWORD_MIN:
        raise ValidationError(f"密码至少 {PASSWORD_MIN} 位", code="weak_password", field="password")
    if len(password.encode("utf-8")) > PASSWORD_MAX_BYTES:
        raise ValidationError("密码太长（最多 72 个字节）", code="invalid_password", field="password")
    salt = bcrypt.gensalt(Settings.bcrypt_rounds)
    return bcrypt.hashpw(password.encode("utf-8"), salt).decode("ascii")


def _check_password(password, password_hash):
    try:
        return bcrypt.checkpw((password or "").encode("utf-8")[:PASSWORD_MAX_BYTES],
                              password_hash.encode("ascii"))
    except ValueError:
        return False


def has_users():
    """True once any user exists (first-run setup is over)."""
    return User.select().exists()


def create_user(actor, username, password, role="operator", display_name=""):
    """Create a login; raise ValidationError or Conflict."""
    name = normalize_username(username)
    if not USERNAME_RE.match(name):
        raise ValidationError("用户名为 2–50 个字母、数字、汉字或 . _ - @", code="invalid_username",
                              field="username")
    if role not in User.ROLES:
        raise ValidationError("角色只能是管理员或操作员", code="invalid_role", field="role")
    display_name = (display_name or "").strip()
    if len(display_name) > 50:
        raise ValidationError("姓名最多 50 个字", code="invalid_display_name", field="display_name")
    password_hash = hash_password(password)
    try:
        with db.atomic():
            user = User.create(username=name, password_hash=password_hash, role=role,
                               display_name=display_name)
            audit.record(actor, "user.create", "user", user.id,
                         after={"username": name, "role": role, "display_name": display_name})
    except IntegrityError:
        raise Conflict(f"用户名“{name}”已被使用", code="username_taken", field="username") from None
    return user


def create_first_admin(actor, username, password, display_name=""):
    """First-run setup: create the shop owner's admin account, only while there are no users."""
    with db.atomic():
        if has_users():
            raise Conflict("系统已初始化，请直接登录", code="already_set_up")
        return create_user(actor, username, password, role="admin", display_name=display_name)


def _dummy_hash():
    """A hash of the cost real ones are made with, checked when the name is unknown: the same
    bcrypt work and the same answer either way, so neither tells which names exist."""
    rounds = Settings.bcrypt_rounds
    if rounds not in _DUMMY_HASHES:
        _DUMMY_HASHES[rounds] = bcrypt.hashpw(b"not-a-real-password",
                                              bcrypt.gensalt(rounds)).decode("ascii")
    return _DUMMY_HASHES[rounds]


_DUMMY_HASHES = {}


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


def _with_throttle_row(name, change):
    """Run change(row) in one transaction on the name's locked throttle row. MySQL may pick one
    of several logins of one name arriving together as a deadlock victim (1213: a row deleted
    by a right password and made again by the next attempts): that one runs again."""
    for attempt in range(50):
        try:
            _ensure_throttle_row(name)
            with db.atomic():
                row = _locked_throttle_row(name)
                if row is not None:
                    return change(row)
        except OperationalError as error:
            if not (error.args and error.args[0] == 1213) or attempt == 49:
                raise
            time.sleep(0.005 * (attempt + 1))
    raise AuthError("登录请求太多，请稍后再试", code="login_busy", status=429)


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
    """A right password (or setup code): the name's attempts start afresh."""
    LoginThrottle.delete().where(LoginThrottle.username == name).execute()


def locked_message(until, what="密码错误次数过多，该用户名已锁定"):
    """The Chinese answer while a name is locked, with the minutes left."""
    minutes = max(1, int((until - now()).total_seconds() + 59) // 60)
    return f"{what}，请 {minutes} 分钟后再试"


def authenticate(actor, username, password):
    """Check a user name and password; return the user, or raise AuthError (401, or 429 when
    locked). The attempt holds its place before the password is checked (reserve_attempt); the
    audit log gets the first failure of a name's window and the lock, not every failure."""
    name = normalize_username(username)[:50]
    if not USERNAME_RE.match(name):
        # No user can have this name (nor the setup code's "#setup"): no row, no audit, but the
        # same bcrypt work as any other refusal.
        _check_password(password, _dummy_hash())
        raise AuthError(LOGIN_FAILED, code="login_failed")
    value = _login_place(name)
    user = User.get_or_none(User.username == name)
    ok = _check_password(password, user.password_hash if user else _dummy_hash())
    if not (ok and user and user.active):
        failures, locked = record_failure(name)
        if failures == 1 or locked:
            with db.atomic():
                audit.record(Actor(user=None, ip=actor.ip, name=name),
                             "login.locked" if locked else "login.failed", "user", "",
                             username=name, failures=failures,
                             window_minutes=Settings.lock_minutes)
        raise AuthError(LOGIN_FAILED, code="login_failed")
    with db.atomic():
        forget_attempts(name)
        User.update(last_login_at=now()).where(User.id == user.id).execute()
        facts = {"failures_before": value - 1} if value > 1 else {}
        audit.record(Actor(user=user, ip=actor.ip), "login.success", "user", user.id, **facts)
    return user


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


def _token_hash(raw):
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def issue_token(user, kind, ip="", user_agent=""):
    """Start a login (kind "web" or "api"); return the raw secret, which is never stored."""
    raw = secrets.token_urlsafe(32)
    if kind == "web":
        expires = now() + datetime.timedelta(minutes=Settings.session_idle_minutes)
    else:
        expires = now() + datetime.timedelta(hours=Settings.api_token_hours)
    AuthToken.create(user=user, kind=kind, token_hash=_token_hash(raw), expires_at=expires,
                     ip=(ip or "")[:45], user_agent=(user_agent or "")[:200])
    return raw


_TOKEN_USER_COLUMNS = ("id", "username", "display_name", "role", "active", "permissions")


def _token_lookup_sql():
    # Every request runs this: plain SQL (peewee's query building cost more than the query).
    p = db.obj.param
    columns = ", ".join(f"u.{c}" for c in _TOKEN_USER_COLUMNS)
    return (f"SELECT t.id, t.last_used_at, {columns} FROM t_auth_token t "
            f"JOIN t_user u ON u.id = t.user_id WHERE t.token_hash = {p} AND t.kind = {p} "
            f"AND t.revoked_at IS NULL AND t.expires_at > {p} AND u.active = {p}")


def resolve_token(raw, kind):
    """The active user behind a live token, or None. Web logins expire after the idle time."""
    if not raw or len(raw) > 200:
        return None
    stamp = now()
    row = db.execute_sql(_token_lookup_sql(), (_token_hash(raw), kind,
                                               stamp.strftime("%Y-%m-%d %H:%M:%S"),
                                               True)).fetchone()
    if row is None:
        return None
    token_id, last_used = row[0], AuthToken.last_used_at.python_value(row[1])
    # Slide the idle timeout, but write at most once a minute, not on every request.
    if (stamp - last_used).total_seconds() >= 60:
        changes = {AuthToken.last_used_at: stamp}
        if kind == "web":
            changes[AuthToken.expires_at] = stamp + datetime.timedelta(
                minutes=Settings.session_idle_minutes)
        AuthToken.update(changes).where(AuthToken.id == token_id).execute()
    user = User(**dict(zip(_TOKEN_USER_COLUMNS, row[2:], strict=True)))
    user.active = bool(user.active)
    user.session_token = raw
    return user


def revoke_token(raw):
    """End a login now (logout)."""
    if raw:
        (AuthToken.update(revoked_at=now())
         .where((AuthToken.token_hash == _token_hash(raw)) & AuthToken.revoked_at.is_null())
         .execute())


def require_role(user, role):
    """Raise Forbidden unless `user` has `role` (admin may do everything)."""
    if user is None or not (user.role == role or user.role == "admin"):
        raise Forbidden("没有权限执行此操作", code="forbidden")


def list_users():
    """All users, admins first."""
    return list(User.select().order_by(User.role, User.username))


# --- permissions and user management ----------------------------------------------------------

PERMISSIONS = {
    "consume": "消费收银",
    "recharge": "开卡、充值",
    "manage_cards": "卡片管理（冻结、挂失、补卡、注销）",
    "reverse": "冲正",
    "edit_customers": "新建、编辑、归档、导入客户",
    "export": "导出 Excel / PDF",
    "statistics": "统计分析、日结",
}
# What each role may do unless the admin switches it for one operator. Admins may do everything.
ROLE_DEFAULTS = {
    "admin": dict.fromkeys(PERMISSIONS, True),
    "operator": {**dict.fromkeys(PERMISSIONS, True), "reverse": False},
}


def permissions_of(user):
    """The user's permissions: the role's defaults with the admin's switches on top."""
    if user is None:
        return dict.fromkeys(PERMISSIONS, False)
    if user.role == "admin":
        return dict(ROLE_DEFAULTS["admin"])
    chosen = {}
    if user.permissions:
        try:
            chosen = {k: bool(v) for k, v in json.loads(user.permissions).items()
                      if k in PERMISSIONS}
        except ValueError:
            chosen = {}
    return {**ROLE_DEFAULTS["operator"], **chosen}


def require_permission(user, permission):
    """Raise Forbidden unless the user may do `permission`."""
    if not permissions_of(user).get(permission):
        raise Forbidden(f"您没有“{PERMISSIONS[permission]}”的权限，请联系管理员",
                        code="forbidden")


def get_user(user_id):
    """The user, or NotFound."""
    user = User.get_or_none(User.id == user_id)
    if user is None:
        raise NotFound("用户不存在", code="user_not_found")
    return user


def _active_admins(except_id):
    return (User.select().where((User.role == "admin") & User.active & (User.id != except_id))
            .count())


def update_user(actor, user_id, role=None, active=None, display_name=None, permissions=None):
    """Change a user's role, active flag, name or permission switches; the last active admin
    keeps the admin role and stays active. Audited field by field."""
    with db.atomic():
        user = get_user(user_id)
        before = {"role": user.role, "active": bool(user.active),
                  "display_name": user.display_name, "permissions": permissions_of(user)}
        changes = {}
        if role is not None:
            if role not in User.ROLES:
                raise ValidationError("角色只能是管理员或操作员", code="invalid_role", field="role")
            changes["role"] = role
        if active is not None:
            changes["active"] = bool(active)
        if display_name is not None:
            name = (display_name or "").strip()
            if len(name) > 50:
                raise ValidationError("姓名最多 50 个字", code="invalid_display_name")
            changes["display_name"] = name
        if permissions is not None:
            unknown = set(permissions) - set(PERMISSIONS)
            if unknown:
                raise ValidationError("未知的权限：" + "、".join(sorted(unknown)),
                                      code="invalid_permission")
            changes["permissions"] = json.dumps({k: bool(v) for k, v in permissions.items()})
        loses_admin = user.role == "admin" and user.active and (
            changes.get("role", "admin") != "admin" or changes.get("active", True) is False)
        if loses_admin and not _active_admins(user.id):
            raise Conflict("这是最后一位启用的管理员，不能停用或改为操作员", code="last_admin")
        if changes:
            User.update(**changes, updated_at=now()).where(User.id == user.id).execute()
        user = get_user(user.id)
        after = {"role": user.role, "active": bool(user.active),
                 "display_name": user.display_name, "permissions": permissions_of(user)}
        diff = audit.diff(before, after)
        if diff:
            audit.record(actor, "user.update", "user", user.id, username=user.username,
                         changes=diff)
        if changes.get("active") is False:
            _end_logins(user.id)
    return user


def _end_logins(user_id, keep_token=None):
    """Revoke every login (browser session, API token) of a user in force, but `keep_token`."""
    live = (AuthToken.user == user_id) & AuthToken.revoked_at.is_null()
    if keep_token:
        live &= AuthToken.token_hash != _token_hash(keep_token)
    AuthToken.update(revoked_at=now()).where(live).execute()


def first_admin():
    """The first active admin (the user the command line acts as), or None."""
    return (User.select().where(User.active & (User.role == "admin")).order_by(User.id)
            .first())


def reset_password(actor, user_id, password):
    """An admin sets a new password for a user; the user's logins end."""
    password_hash = hash_password(password)
    with db.atomic():
        user = get_user(user_id)
        User.update(password_hash=password_hash, updated_at=now()).where(
            User.id == user.id).execute()
        _end_logins(user.id)
        audit.record(actor, "user.reset_password", "user", user.id, username=user.username)
    return user


def change_own_password(actor, old_password, new_password, keep_token=None):
    """Any user changes their own password (the old one is asked for); other logins end."""
    user = get_user(actor.user.id)
    # The old password is a password check like a login's: the same places and lock, so a
    # stolen session cannot try passwords without limit.
    _login_place(user.username)
    if not _check_password(old_password, user.password_hash):
        record_failure(user.username)
        raise ValidationError("原密码不正确", code="wrong_password", field="old_password")
    forget_attempts(user.username)
    password_hash = hash_password(new_password)
    with db.atomic():
        User.update(password_hash=password_hash, updated_at=now()).where(
            User.id == user.id).execute()
        _end_logins(user.id, keep_token)
        audit.record(actor, "user.change_password", "user", user.id)
    return user


def live_tokens():
    """Logins in force (browser sessions and API tokens), newest first, with their users."""
    return list(AuthToken.select(AuthToken, User).join(User)
                .where(AuthToken.revoked_at.is_null() & (AuthToken.expires_at > now()))
                .order_by(AuthToken.id.desc()))


def revoke_token_by_id(actor, token_id):
    """An admin ends one login (a lost phone, a leaked API token)."""
    with db.atomic():
        token = AuthToken.get_or_none(AuthToken.id == token_id)
        if token is None:
            raise NotFound("没有这个登录令牌", code="token_not_found")
        AuthToken.update(revoked_at=now()).where(AuthToken.id == token_id).execute()
        audit.record(actor, "token.revoke", "auth_token", token_id, user_id=token.user_id,
                     kind=token.kind)
