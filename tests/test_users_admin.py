"""System users (admin): roles, disabling, the last admin, passwords, per-operator permissions
checked on every route, and the audit log viewer."""
import json

import pytest

from crm.errors import Conflict
from crm.models import AuditLog, User
from crm.services import SYSTEM
from crm.services import users as user_service
from tests.conftest import PASSWORD, AuthActions, csrf_token
from tests.route_helpers import METHODS, routes


def _db(app, fn):
    with app.app_context(), app.extensions["crm_db"].connection_context():
        return fn()


def test_last_active_admin_cannot_be_demoted_or_disabled(app, make_user):
    """The shop always keeps one active admin."""
    boss = make_user("boss", role="admin")
    for change in ({"role": "operator"}, {"active": False}):
        with pytest.raises(Conflict, match="最后一位启用的管理员"):
            _db(app, lambda c=change: user_service.update_user(SYSTEM, boss.id, **c))
    second = make_user("boss2", role="admin")
    _db(app, lambda: user_service.update_user(SYSTEM, boss.id, role="operator"))
    with pytest.raises(Conflict):
        _db(app, lambda: user_service.update_user(SYSTEM, second.id, active=False))
    assert _db(app, lambda: User.get_by_id(second.id).active)


def test_disable_and_reset_password_end_logins(app, client, make_user, auth):
    """A disabled user is logged out and cannot log in; a reset password ends logins too."""
    make_user("boss", role="admin")
    ann = make_user("ann")
    auth.login("ann")
    assert client.get("/").status_code == 200
    _db(app, lambda: user_service.reset_password(SYSTEM, ann.id, "another-pass-1"))
    assert client.get("/").status_code == 302
    assert auth.login("ann", "another-pass-1").status_code == 302
    _db(app, lambda: user_service.update_user(SYSTEM, ann.id, active=False))
    assert client.get("/").status_code == 302
    assert auth.login("ann", "another-pass-1").status_code == 401


def test_change_own_password(app, client, make_user, auth):
    """Every user changes their own password (the old one asked for); audited."""
    make_user("ann")
    auth.login("ann")
    token = csrf_token(client, "/account/password")
    resp = client.post("/account/password", data={"csrf_token": token, "old_password": "wrong",
                                                  "password": "new-pass-123",
                                                  "password2": "new-pass-123"})
    assert resp.status_code == 422 and "原密码不正确" in resp.get_data(as_text=True)
    resp = client.post("/account/password", data={"csrf_token": token, "old_password": PASSWORD,
                                                  "password": "new-pass-123",
                                                  "password2": "new-pass-123"})
    assert resp.status_code == 302
    assert client.get("/").status_code == 200  # this login stays
    auth.logout()
    assert auth.login("ann", "new-pass-123").status_code == 302
    assert _db(app, lambda: AuditLog.select().where(
        AuditLog.action == "user.change_password").count()) == 1


def test_admin_edits_a_user_through_the_page(app, client, make_user, auth):
    """The user page changes name and permissions; the audit log has the diff."""
    make_user("boss", role="admin")
    ann = make_user("ann")
    auth.login("boss")
    token = csrf_token(client, f"/admin/users/{ann.id}")
    form = {"csrf_token": token, "role": "operator", "active": "1", "display_name": "安安",
            **{f"perm_{p}": "1" for p in user_service.PERMISSIONS if p != "export"}}
    assert client.post(f"/admin/users/{ann.id}", data=form).status_code == 302
    user = _db(app, lambda: User.get_by_id(ann.id))
    granted = user_service.permissions_of(user)
    assert granted["reverse"] is True and granted["export"] is False
    entry = _db(app, lambda: AuditLog.get(AuditLog.action == "user.update"))
    changes = json.loads(entry.detail)["changes"]
    assert changes["display_name"] == ["", "安安"]
    assert changes["permissions"][1]["export"] is False


@pytest.mark.parametrize("permission", list(user_service.PERMISSIONS))
def test_each_permission_switched_off_is_enforced_on_every_route(app, client, make_user,
                                                                 permission, api_token):
    """For an operator with one permission off, every web view and API endpoint that needs it
    answers 403; the same operator with it on is not refused for that reason."""
    make_user("boss", role="admin")
    ann = make_user("ann")
    _db(app, lambda: user_service.update_user(SYSTEM, ann.id, permissions={permission: False}))
    AuthActions(client).login("ann")
    token = csrf_token(client, "/")
    headers = api_token("bob")
    bob = _db(app, lambda: User.get(User.username == "bob"))
    _db(app, lambda: user_service.update_user(SYSTEM, bob.id, permissions={permission: False}))
    guarded = {e for e, view in app.view_functions.items()
               if permission in getattr(view, "required_permissions", ())}
    assert guarded, f"no route is guarded by {permission}"
    checked = 0
    for endpoint, url, method, _ in routes(app):
        if endpoint not in guarded or method not in METHODS:
            continue
        if url.startswith("/api/"):
            resp = client.open(url, method=method, json={}, headers=headers)
            assert resp.status_code == 403, (method, url, resp.status_code)
        else:
            data = {"csrf_token": token} if method != "GET" else None
            resp = client.open(url, method=method, data=data)
            assert resp.status_code == 403, (method, url, resp.status_code)
            assert "权限" in resp.get_data(as_text=True)
        checked += 1
    assert checked >= 2


def test_operator_may_reverse_when_allowed(app, client, make_user):
    """The reverse permission is off for operators by default and can be switched on."""
    from crm.services import cards
    from tests.ledger_helpers import key, make_shop

    shop = make_shop(app)
    card_id = shop.open_card(amount=1000, bonus=0)
    sold = shop.do(lambda: cards.consume(shop.operator, card_id, key(), 100))
    AuthActions(client).login("ann")
    form = {"csrf_token": csrf_token(client, "/"), "reason": "错", "card_id": str(card_id),
            "idempotency_key": key()}
    assert client.post(f"/cards/records/{sold.record_id}/reverse", data=form).status_code == 403
    _db(app, lambda: user_service.update_user(SYSTEM, shop.operator.user.id,
                                              permissions={"reverse": True}))
    assert client.post(f"/cards/records/{sold.record_id}/reverse", data=form).status_code == 302
    assert shop.card(card_id).money == 1000


def test_audit_viewer_filters(app, client, make_user, auth):
    """The admin's audit log page filters by user and action; logins appear, success and failure."""
    make_user("boss", role="admin")
    make_user("ann")
    auth.login("ann", "wrong-password")
    auth.login("ann")
    auth.logout()
    auth.login("boss")
    html = client.get("/admin/audit?username=ann").get_data(as_text=True)
    assert "登录失败" in html and html.count("<td>ann</td>") >= 2
    html = client.get("/admin/audit?action=login.failed").get_data(as_text=True)
    assert "共 1 条" in html
    assert client.get("/admin/audit?start=2026-13-01").status_code == 422


def test_admin_ends_a_browser_login_from_the_tokens_page(app, client, make_user, auth):
    """The tokens page lists browser logins; ending one logs that browser out."""
    make_user("boss", role="admin")
    make_user("ann")
    other = app.test_client()
    AuthActions(other).login("ann")
    assert other.get("/").status_code == 200
    auth.login("boss")
    html = client.get("/admin/tokens").get_data(as_text=True)
    assert "浏览器" in html and html.count("<tr><td>") == 2  # ann's login and the admin's own
    from crm.models import AuthToken

    token_id = _db(app, lambda: AuthToken.select().join(User).where(
        User.username == "ann").get().id)
    resp = client.post(f"/admin/tokens/{token_id}/revoke",
                       data={"csrf_token": csrf_token(client, "/admin/tokens")})
    assert resp.status_code == 302
    assert other.get("/").status_code == 302
