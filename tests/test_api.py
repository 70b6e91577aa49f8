"""The JSON API base: login and bearer tokens, error format, users."""

import pytest

from crm.models import AuthToken, User
from tests.conftest import PASSWORD


def _in_db(app, fn):
    with app.app_context(), app.extensions["crm_db"].connection_context():
        return fn()


def test_login_returns_a_token_and_role(app, client, make_user):
    """POST /api/v1/login gives a bearer token that works on /api/v1/me; only its hash is stored."""
    make_user("ann")
    resp = client.post("/api/v1/login", json={"username": "ann", "password": PASSWORD})
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["role"] == "operator" and body["token"]
    me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {body['token']}"})
    assert me.status_code == 200 and me.get_json()["username"] == "ann"
    stored = _in_db(app, lambda: [t.token_hash for t in AuthToken.select()])
    assert body["token"] not in stored and len(stored) == 1


@pytest.mark.parametrize("body,status,code", [
    ({"username": "ann", "password": "wrong-password"}, 401, "login_failed"),
    ({"username": "nobody", "password": "wrong-password"}, 401, "login_failed"),
    ({"username": "ann"}, 422, "missing_field"),
    ({"username": ["ann"], "password": PASSWORD}, 422, "invalid_type"),
    ([1, 2], 400, "invalid_json"),
    ("not json", 400, "invalid_json"),
])
def test_login_errors(client, make_user, body, status, code):
    """Bad logins get the contract's error format and status."""
    make_user("ann")
    if isinstance(body, str):
        resp = client.post("/api/v1/login", data=body, content_type="application/json")
    else:
        resp = client.post("/api/v1/login", json=body)
    assert resp.status_code == status
    error = resp.get_json()["error"]
    assert error["code"] == code and error["message"]


@pytest.mark.parametrize("header", ["", "Bearer", "Bearer nonsense", "Basic YW5uOng="])
def test_missing_or_bad_token_is_401(client, make_user, header):
    """No token or a bad one: 401 JSON."""
    make_user("ann")
    resp = client.get("/api/v1/me", headers={"Authorization": header} if header else {})
    assert resp.status_code == 401
    assert resp.get_json()["error"]["code"] == "unauthorized"


def test_browser_cookie_does_not_authorise_the_api(client, make_user, auth):
    """A logged-in browser session is not an API credential (the API has no CSRF check)."""
    make_user("ann")
    auth.login("ann")
    assert client.get("/").status_code == 200
    assert client.get("/api/v1/me").status_code == 401


def test_logout_revokes_the_token(client, api_token):
    """After /api/v1/logout the token is dead."""
    headers = api_token("ann")
    assert client.post("/api/v1/logout", headers=headers).status_code == 200
    assert client.get("/api/v1/me", headers=headers).status_code == 401


def test_expired_token_is_401(app, client, api_token, clock):
    """Tokens expire after API_TOKEN_HOURS (12), used or not."""
    headers = api_token("ann")
    clock.advance(hours=11, minutes=59)
    assert client.get("/api/v1/me", headers=headers).status_code == 200
    clock.advance(minutes=2)
    assert client.get("/api/v1/me", headers=headers).status_code == 401


def test_admin_creates_users(app, client, api_token):
    """POST /api/v1/users (admin): 201 with id; duplicate 409; bad values 422."""
    headers = api_token("boss", role="admin")
    resp = client.post("/api/v1/users", headers=headers,
                       json={"username": "ann", "password": PASSWORD, "role": "operator"})
    assert resp.status_code == 201
    assert resp.get_json()["id"] == _in_db(app, lambda: User.get(User.username == "ann").id)
    again = client.post("/api/v1/users", headers=headers,
                        json={"username": "ANN", "password": PASSWORD})
    assert again.status_code == 409
    assert again.get_json()["error"]["code"] == "username_taken"
    for body, code in (({"username": "bob", "password": PASSWORD, "role": "root"}, "invalid_role"),
                       ({"username": "bob", "password": "short"}, "invalid_password"),
                       ({"username": "b", "password": PASSWORD}, "invalid_username"),
                       ({"username": "bob", "password": PASSWORD, "role": 1}, "invalid_type")):
        resp = client.post("/api/v1/users", headers=headers, json=body)
        assert resp.status_code == 422, body
        assert resp.get_json()["error"]["code"] == code
    names = [u["username"] for u in client.get("/api/v1/users", headers=headers).get_json()["items"]]
    assert sorted(names) == ["ann", "boss"]


def test_api_login_shares_the_lockout(client, make_user):
    """Five wrong API passwords lock the name for the API as for the web form."""
    make_user("ann")
    for _ in range(5):
        client.post("/api/v1/login", json={"username": "ann", "password": "wrong-password"})
    resp = client.post("/api/v1/login", json={"username": "ann", "password": PASSWORD})
    assert resp.status_code == 429
    assert resp.get_json()["error"]["code"] == "login_locked"


def test_admin_lists_and_revokes_tokens(app, client, api_token):
    """Admins see the logins in force and end one; that token is refused at once."""
    boss = api_token("boss", role="admin")
    ann = api_token("ann")
    items = client.get("/api/v1/tokens", headers=boss).get_json()["items"]
    assert {t["username"] for t in items} == {"boss", "ann"}
    assert client.get("/api/v1/tokens", headers=ann).status_code == 403
    victim = next(t for t in items if t["username"] == "ann")
    assert client.delete(f"/api/v1/tokens/{victim['id']}", headers=boss).status_code == 200
    assert client.get("/api/v1/me", headers=ann).status_code == 401
    assert client.delete("/api/v1/tokens/99999", headers=boss).status_code == 404
    assert [t["username"] for t in client.get("/api/v1/tokens",
                                              headers=boss).get_json()["items"]] == ["boss"]
