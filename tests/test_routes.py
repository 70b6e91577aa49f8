"""Every URL: login required (web redirect, API 401), admin URLs refused to operators (403)."""
import pytest

from crm.api import PUBLIC_ENDPOINTS as API_PUBLIC
from crm.web import PUBLIC_ENDPOINTS as WEB_PUBLIC
from tests.conftest import PASSWORD, AuthActions, csrf_token
from tests.route_helpers import METHODS, routes

PUBLIC = WEB_PUBLIC | API_PUBLIC


def _admin_endpoints(app):
    return {e for e, view in app.view_functions.items()
            if getattr(view, "required_role", None) == "admin"}


def _send(client, url, method, headers=None, token=None):
    data = {"csrf_token": token} if token and method != "GET" else None
    return client.open(url, method=method, data=data, headers=headers)


def test_admin_views_are_marked(app):
    """The role check is on the views that need it (guards against losing the decorator)."""
    assert {"admin.users", "admin.create_user", "api.list_users", "api.create_user"} <= \
        _admin_endpoints(app)


@pytest.mark.backends("sqlite")
def test_every_private_url_needs_a_login(app, client, make_user):
    """Anonymous: web URLs redirect to the login page, API URLs answer 401 JSON."""
    make_user("boss", role="admin")
    checked = 0
    for endpoint, url, method, _ in routes(app, logouts=True):
        if endpoint in PUBLIC:
            continue
        resp = _send(client, url, method)
        if url.startswith("/api/"):
            assert resp.status_code == 401, (method, url)
            assert resp.get_json()["error"]["code"] == "unauthorized"
        else:
            assert resp.status_code == 302, (method, url, resp.status_code)
            assert "/login" in resp.headers["Location"], (method, url)
        checked += 1
    assert checked >= 8


def test_operator_gets_403_on_every_admin_url(app, client, make_user, auth, api_token):
    """Logged in as an operator (browser session and API token), every admin URL is refused."""
    make_user("boss", role="admin")
    make_user("ann")
    auth.login("ann", PASSWORD)
    token = csrf_token(client, "/")
    headers = api_token("ann2")
    admin_endpoints = _admin_endpoints(app)
    checked = 0
    for endpoint, url, method, _ in routes(app):
        if endpoint not in admin_endpoints:
            continue
        if url.startswith("/api/"):
            resp = client.open(url, method=method, json={}, headers=headers)
            assert resp.status_code == 403, (method, url)
            assert resp.get_json()["error"]["code"] == "forbidden"
        else:
            resp = _send(client, url, method, token=token)
            assert resp.status_code == 403, (method, url, resp.status_code)
            assert "没有权限" in resp.get_data(as_text=True)
        checked += 1
    assert checked == sum(1 for e, *_ in routes(app) if e in admin_endpoints) >= 4


def test_admin_reaches_admin_urls(client, admin):
    """The same URLs work for an admin."""
    assert client.get("/admin/users").status_code == 200


@pytest.mark.backends("sqlite")
def test_api_routes_and_openapi_document_agree(app, client):
    """Every /api/ route is in /api/openapi.json with its methods, and nothing more."""
    doc = client.get("/api/openapi.json").get_json()
    assert doc["openapi"].startswith("3.")
    documented = {(path, method.upper()) for path, ops in doc["paths"].items() for method in ops
                  if method.upper() in METHODS}
    served = set()
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/v1/"):
            path = rule.rule.replace("<int:", "{").replace("<", "{").replace(">", "}")
            served |= {(path, m) for m in rule.methods & set(METHODS)}
    assert served == documented


@pytest.mark.backends("sqlite")
def test_security_headers_on_every_response(client, make_user):
    """Pages, API answers and errors carry the security headers."""
    make_user("ann")
    for url in ("/login", "/api/openapi.json", "/no-such-page", "/api/v1/me"):
        resp = client.get(url)
        assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
        assert resp.headers["X-Frame-Options"] == "DENY"
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["Referrer-Policy"] == "same-origin"


@pytest.mark.backends("sqlite")
def test_error_pages_are_chinese(client, admin):
    """404 and 405 are Chinese pages on the web and JSON under /api/."""
    resp = client.get("/no-such-page")
    assert resp.status_code == 404 and "页面不存在" in resp.get_data(as_text=True)
    resp = client.get("/api/v1/no-such-thing")
    assert resp.status_code == 404 and resp.get_json()["error"]["code"] == "not_found"
    resp = client.get("/logout")
    assert resp.status_code == 405 and "不支持的请求方式" in resp.get_data(as_text=True)


@pytest.mark.backends("sqlite")
def test_unexpected_error_is_a_chinese_500_without_trace(app, make_user):
    """A bug gives a Chinese 500 page, never a stack trace."""
    app.config["PROPAGATE_EXCEPTIONS"] = False

    @app.route("/boom")
    def boom():
        raise RuntimeError("secret internals")

    make_user("admin", role="admin")
    client = app.test_client()
    AuthActions(client).login("admin")
    resp = client.get("/boom")
    body = resp.get_data(as_text=True)
    assert resp.status_code == 500
    assert "系统出错了" in body and "secret internals" not in body and "Traceback" not in body

