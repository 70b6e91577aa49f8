"""Every route × {anonymous, operator, admin} × its methods, against the access table in the
README: the README says who may use each route, and the app must agree."""
import re
from pathlib import Path

import pytest

from crm.api import PUBLIC_ENDPOINTS as API_PUBLIC
from crm.services import users as user_service
from crm.web import PUBLIC_ENDPOINTS as WEB_PUBLIC
from tests.conftest import AuthActions, csrf_token
from tests.route_helpers import routes

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def access_class(app, endpoint):
    """public, login, admin, or the permission the view needs."""
    if endpoint in WEB_PUBLIC | API_PUBLIC:
        return "public"
    view = app.view_functions[endpoint]
    if getattr(view, "required_role", None) == "admin":
        return "admin"
    permissions = getattr(view, "required_permissions", ())
    return "+".join(permissions) if permissions else "login"


def readme_table():
    """{(method, path): class} from the README's access table."""
    table = {}
    for method, path, klass in re.findall(r"^\| `(GET|POST|PUT|PATCH|DELETE) ([^`]+)` \| "
                                          r"([a-z_+]+) \|$", README, re.M):
        table[(method, path)] = klass
    return table


@pytest.mark.backends("sqlite")
def test_readme_access_table_matches_the_app(app):
    """The README's access table lists every route and method with the class the app enforces."""
    expected = {(m, p): access_class(app, e) for e, _, m, p in routes(app)}
    assert readme_table() == expected


def _allowed(resp, klass):
    if klass == "public":  # /setup sends to /login once set up: that is not a refusal
        return resp.status_code not in (401, 403)
    return resp.status_code not in (401, 403) and "/login" not in resp.headers.get("Location", "")


@pytest.mark.backends("sqlite")
@pytest.mark.parametrize("who", ["anonymous", "operator", "admin"])
def test_every_route_for_every_role(app, client, make_user, who):
    """Anonymous: only public routes; operator: login routes and their default permissions;
    admin: everything. Statuses other than 401/403/redirect-to-login (400, 404, 422 for the
    placeholder data) count as let through."""
    make_user("boss", role="admin")
    make_user("ann")
    headers = {}
    token = None
    if who != "anonymous":
        name = "boss" if who == "admin" else "ann"
        AuthActions(client).login(name)
        token = csrf_token(client, "/")
        api = client.post("/api/v1/login", json={"username": name,
                                                 "password": "correct-horse-9"}).get_json()
        headers = {"Authorization": f"Bearer {api['token']}"}
    defaults = user_service.ROLE_DEFAULTS["operator"]
    for endpoint, url, method, _ in routes(app):
        klass = access_class(app, endpoint)
        if who == "anonymous":
            allowed = klass == "public"
        elif who == "admin":
            allowed = True
        else:
            allowed = klass in ("public", "login") or (
                klass != "admin" and all(defaults[p] for p in klass.split("+")))
        if url.startswith("/api/"):
            resp = client.open(url, method=method, json={}, headers=headers)
        else:
            resp = client.open(url, method=method,
                               data={"csrf_token": token} if token and method != "GET" else None)
        assert _allowed(resp, klass) == allowed, (who, method, url, klass, resp.status_code)
