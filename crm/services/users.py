"""System users, passwords, logins and their tokens, permissions. The lock after too many wrong
passwords is crm.services.login_throttle's (its names are importable from here too)."""
import datetime
import hashlib
import json
import re
import secrets

import bcrypt
from peewee import IntegrityError

from crm.clock import now
from crm.db import db
from crm.errors import AuthError, Conflict, Forbidden, NotFound, ValidationError
from crm.models import AuthToken, User
from crm.services import Actor, audit, login_throttle, names
from crm.services.login_throttle import (  # noqa: F401 — callers take these from here
    _login_place,
    check_setup_code,
    forget_attempts,
    locked_message,
    record_failure,
    reserve_attempt,
)

USERNAME_RE = re.compile(r"^[\w.\-@]{2,50}$")
PASSWORD_MIN = 8
PASSWORD_MAX_BYTES = 72  # bcrypt reads no further; refuse rather than silently truncate

LOGIN_FAILED = "用户名或密码错误"


class Settings:
    """The login rules in force; the app sets these from its configuration at start (the
    throttle's limit and window: login_throttle.Settings)."""

    bcrypt_rounds = 12
    session_idle_minutes = 480
    api_token_hours = 12


def configure(config):
    """Take the login rules from the app configuration."""
    Settings.bcrypt_rounds = max(int(config["BCRYPT_ROUNDS"]), 4)
    login_throttle.configure(config)
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
                             window_minutes=login_throttle.Settings.lock_minutes)
        raise AuthError(LOGIN_FAILED, code="login_failed")
    forget_attempts(name)  # its own statement: a deadlock retry must not replay more
    with db.atomic():
        User.update(last_login_at=now()).where(User.id == user.id).execute()
        facts = {"failures_before": value - 1} if value > 1 else {}
        audit.record(Actor(user=user, ip=actor.ip), "login.success", "user", user.id, **facts)
    return user


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


def _own_password(user, password, field, wrong):
    """A user's own password asked again (to change it, to see the recovery key): a password
    check like a login's — the same places and lock — so a stolen session cannot try passwords
    without limit."""
    _login_place(user.username)
    if not _check_password(password, user.password_hash):
        record_failure(user.username)
        raise ValidationError(wrong, code="wrong_password", field=field)
    forget_attempts(user.username)


def confirm_own_password(actor, password):
    """The signed-in user typed their password again (before the recovery key is shown)."""
    _own_password(get_user(actor.user.id), password, "password", "密码不正确")


def change_own_password(actor, old_password, new_password, keep_token=None):
    """Any user changes their own password (the old one is asked for); other logins end."""
    user = get_user(actor.user.id)
    _own_password(user, old_password, "old_password", "原密码不正确")
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
