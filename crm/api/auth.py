"""API login, logout, the current user, system users, the audit log and logins in force.
Each operation is declared once (crm.api.declare)."""
from typing import Literal

from flask import request
from flask_login import current_user
from pydantic import Field

from crm.api.declare import BODY_ERRORS, operation
from crm.api.types import Input, Ok, Output, Page, Period, Stamp
from crm.http import actor, admin_required, client_ip, period_arg
from crm.services import audit
from crm.services import users as user_service

Role = Literal["admin", "operator"]


class LoginRequest(Input):
    username: str = Field(max_length=50)
    password: str


class LoginResponse(Output):
    token: str
    role: Role
    username: str


class User(Output):
    """A user as the API shows it (never the password hash)."""

    id: int
    username: str
    display_name: str
    role: Role
    active: bool
    permissions: dict[str, bool] = {}

    @classmethod
    def of(cls, user, **more):
        return cls(id=user.id, username=user.username, display_name=user.display_name,
                   role=user.role, active=user.active, **more)


class UserList(Output):
    items: list[User]


class UserCreate(Input):
    username: str = Field(min_length=2, max_length=50)
    password: str = Field(min_length=8)
    role: Role = "operator"
    display_name: str = Field("", max_length=50)


class UserPatch(Input):
    role: Role = None
    active: bool = None
    display_name: str = Field(None, max_length=50)
    permissions: dict[str, bool] = None


class PasswordReset(Input):
    password: str = Field(min_length=8)


class PasswordChange(Input):
    old_password: str
    password: str = Field(min_length=8)


class AuditQuery(Period):
    username: str = Field(None, description="用户名")
    action: str = Field(None, description="操作")
    page: Page = None


class AuditRow(Output):
    id: int
    time: Stamp
    username: str
    ip: str
    action: str
    object_type: str
    object_id: str
    detail: str = Field(description="JSON 文本：修改前后的值或其他事实")


class AuditList(Output):
    total: int
    items: list[AuditRow]


class Token(Output):
    id: int
    username: str
    kind: Literal["web", "api"]
    ip: str
    created_at: Stamp
    last_used_at: Stamp
    expires_at: Stamp


class TokenList(Output):
    items: list[Token]


LOCKED = {429: "错误次数过多，用户名已锁定"}


@operation("POST", "/v1/login", "登录，换取令牌", "login", body=LoginRequest, public=True,
           answers={200: (LoginResponse, "OK")},
           errors={400: "请求体不是 JSON 对象", 401: "用户名或密码错误", 422: "字段缺失或类型错误",
                   **LOCKED})
def login(body):
    """Exchange a user name and password for a bearer token."""
    user = user_service.authenticate(actor(), body.username, body.password)
    token = user_service.issue_token(user, "api", ip=client_ip(),
                                     user_agent=request.headers.get("User-Agent", ""))
    return LoginResponse(token=token, role=user.role, username=user.username)


@operation("POST", "/v1/logout", "注销当前令牌", "logout", answers={200: (Ok, "OK")})
def logout():
    """Revoke the token this request carries."""
    user_service.revoke_token(current_user.get_id())
    return Ok(ok=True)


@operation("GET", "/v1/me", "当前用户", "me", answers={200: (User, "OK")})
def me():
    """The user the token belongs to."""
    return User.of(current_user)


@operation("GET", "/v1/users", "系统用户列表（管理员）", "listUsers", answers={200: (UserList, "OK")})
@admin_required
def list_users():
    """All system users (admin)."""
    return UserList(items=[User.of(u) for u in user_service.list_users()])


@operation("POST", "/v1/users", "新增系统用户（管理员）", "createUser", body=UserCreate,
           answers={201: (User, "已创建")},
           errors={400: "请求体不是 JSON 对象", 409: "用户名已被使用", 422: "用户名、密码或角色不合规"})
@admin_required
def create_user(body):
    """Create a system user (admin)."""
    return User.of(user_service.create_user(actor(), body.username, body.password,
                                            role=body.role, display_name=body.display_name))


@operation("PATCH", "/v1/users/<int:user_id>",
           "修改用户的角色、启用状态、姓名、权限（管理员；最后一位管理员不能停用或降级）", "updateUser",
           body=UserPatch, answers={200: (User, "OK")},
           errors={**BODY_ERRORS, 409: "最后一位启用的管理员"})
@admin_required
def update_user(user_id, body):
    """Change role, active, display_name or permissions ({name: true/false}) (admin)."""
    user = user_service.update_user(actor(), user_id, role=body.role, active=body.active,
                                    display_name=body.display_name, permissions=body.permissions)
    return User.of(user, permissions=user_service.permissions_of(user))


@operation("POST", "/v1/users/<int:user_id>/password", "重设用户密码（管理员）", "resetUserPassword",
           body=PasswordReset, answers={200: (Ok, "OK")},
           errors={**BODY_ERRORS})
@admin_required
def reset_user_password(user_id, body):
    """Set a new password for a user (admin); the user's logins end."""
    user_service.reset_password(actor(), user_id, body.password)
    return Ok(ok=True)


@operation("POST", "/v1/me/password", "修改自己的密码", "changeMyPassword", body=PasswordChange,
           answers={200: (Ok, "OK")},
           errors={**BODY_ERRORS, **LOCKED})  # the old password is counted like a login
def change_my_password(body):
    """Change one's own password (old_password, password); other logins end."""
    user_service.change_own_password(actor(), body.old_password, body.password,
                                     keep_token=current_user.get_id())
    return Ok(ok=True)


@operation("GET", "/v1/audit", "操作日志（管理员）", "auditLog", query=AuditQuery,
           answers={200: (AuditList, "OK")}, errors={422: "日期不正确"})
@admin_required
def audit_log(query):
    """The audit log, newest first: username?, action?, start?, end?, page?."""
    start, end = period_arg()
    rows, total = audit.search(username=query.username or "", action=query.action or "",
                               start=start, end=end, page=query.page or 1)
    return AuditList(total=total, items=[
        AuditRow(id=r.id, time=r.created_at, username=r.username, ip=r.ip, action=r.action,
                 object_type=r.object_type, object_id=r.object_id, detail=r.detail)
        for r in rows])


@operation("GET", "/v1/tokens", "正在生效的登录与 API 令牌（管理员）", "listTokens",
           answers={200: (TokenList, "OK")})
@admin_required
def list_tokens():
    """Logins in force (browser sessions and API tokens), newest first (admin)."""
    return TokenList(items=[
        Token(id=t.id, username=t.user.username, kind=t.kind, ip=t.ip, created_at=t.created_at,
              last_used_at=t.last_used_at, expires_at=t.expires_at)
        for t in user_service.live_tokens()])


@operation("DELETE", "/v1/tokens/<int:token_id>", "立即注销某个登录（管理员）", "revokeToken",
           answers={200: (Ok, "OK")})
@admin_required
def revoke_token(token_id):
    """End one login now (admin)."""
    user_service.revoke_token_by_id(actor(), token_id)
    return Ok(ok=True)
