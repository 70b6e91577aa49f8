"""Login, logout, lockout, first-run setup, CSRF and the role check on every URL."""
import re

import bcrypt
import pytest

from crm.models import AuditLog, LoginThrottle, User
from crm.services import SYSTEM
from crm.services import users as user_service
from tests.conftest import PASSWORD, csrf_token


def _in_db(app, fn):
    with app.app_context(), app.extensions["crm_db"].connection_context():
        return fn()


def test_login_page_redirects_to_setup_until_an_admin_exists(client):
    """First run: the login page sends the owner to the setup page."""
    resp = client.get("/login")
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/setup")


def test_setup_from_loopback_creates_admin_and_logs_in(app, client):
    """On the shop PC itself the setup page needs no code."""
    token = csrf_token(client, "/setup")
    resp = client.post("/setup", data={"csrf_token": token, "username": "Boss",
                                       "display_name": "王店长", "password": PASSWORD,
                                       "password2": PASSWORD})
    assert resp.status_code == 302
    user = _in_db(app, lambda: User.get(User.username == "boss"))
    assert user.role == "admin"
    assert "王店长" in client.get("/").get_data(as_text=True)
    # Setup is over: the page now sends people to the login page.
    assert client.get("/setup").headers["Location"].endswith("/login")


LAN = {"REMOTE_ADDR": "192.168.1.50"}


def test_setup_refuses_lan_client_without_the_code(app):
    """From another PC the one-time code is required; without it nothing is created."""
    client = app.test_client()
    client.environ_base.update(LAN)
    page = client.get("/setup").get_data(as_text=True)
    assert 'name="setup_code"' in page
    form = {"csrf_token": csrf_token(client, "/setup"), "username": "intruder",
            "password": PASSWORD, "password2": PASSWORD}
    for code in ("", "000000" if app.config["SETUP_CODE"] != "000000" else "111111"):
        resp = client.post("/setup", data={**form, "setup_code": code})
        assert resp.status_code == 403
        assert "初始化码不正确" in resp.get_data(as_text=True)
    assert _in_db(app, lambda: User.select().count()) == 0
    resp = client.post("/setup", data={**form, "setup_code": app.config["SETUP_CODE"]})
    assert resp.status_code == 302
    assert _in_db(app, lambda: User.select().count()) == 1


@pytest.mark.parametrize("username,password,password2,message", [
    ("a", PASSWORD, PASSWORD, "用户名为 2–50"),
    ("boss", "short", "short", "密码至少 8 位"),
    ("boss", PASSWORD, PASSWORD + "x", "两次输入的密码不一致"),
    ("x" * 51, PASSWORD, PASSWORD, "用户名为 2–50"),
])
def test_setup_bad_input(app, client, username, password, password2, message):
    """Bad setup input gets a Chinese message, a 4xx and no user."""
    resp = client.post("/setup", data={"csrf_token": csrf_token(client, "/setup"),
                                       "username": username, "password": password,
                                       "password2": password2})
    assert 400 <= resp.status_code < 500
    assert message in resp.get_data(as_text=True)
    assert _in_db(app, lambda: User.select().count()) == 0


def test_login_logout(client, make_user, auth):
    """A good password logs in; logout ends the session for good."""
    make_user("ann", display_name="安安")
    resp = auth.login("ann")
    assert resp.status_code == 302
    assert "安安" in client.get("/").get_data(as_text=True)
    cookie = client.get_cookie("crm_session").value
    assert auth.logout().status_code == 302
    assert client.get("/").status_code == 302
    # Replaying the old session cookie does not bring the login back: the token was revoked.
    client.set_cookie("crm_session", cookie)
    assert client.get("/").status_code == 302


def test_session_id_changes_on_login(client, make_user, auth):
    """The session cookie after login is not the one from before it."""
    make_user("ann")
    client.get("/login")
    before = client.get_cookie("crm_session")
    auth.login("ann")
    after = client.get_cookie("crm_session")
    assert after is not None and (before is None or before.value != after.value)


def test_wrong_password_is_refused_with_a_generic_message(client, make_user, auth):
    """Wrong password and unknown user get the same answer."""
    make_user("ann")
    wrong = auth.login("ann", "wrong-password")
    unknown = auth.login("nobody", "wrong-password")
    assert wrong.status_code == unknown.status_code == 401
    for resp in (wrong, unknown):
        assert "用户名或密码错误" in resp.get_data(as_text=True)


def test_sixth_attempt_is_locked_even_with_the_right_password(app, client, make_user, auth,
                                                               clock):
    """After 5 wrong passwords the name is locked for 15 minutes, then usable again."""
    make_user("ann")
    for _ in range(5):
        assert auth.login("ann", "wrong-password").status_code == 401
    resp = auth.login("ann", PASSWORD)
    assert resp.status_code == 429
    assert "已锁定" in resp.get_data(as_text=True)
    assert client.get("/").status_code == 302  # not logged in

    def lock():
        return LoginThrottle.get(LoginThrottle.username == "ann").locked_until

    until = _in_db(app, lock)
    minutes = (until - clock.now()).total_seconds() / 60
    assert 14 < minutes <= 15
    clock.advance(minutes=14)
    assert auth.login("ann", PASSWORD).status_code == 429  # still locked
    clock.advance(minutes=1, seconds=1)
    assert auth.login("ann", PASSWORD).status_code == 302
    actions = _in_db(app, lambda: [a.action for a in AuditLog.select().order_by(AuditLog.id)])
    # Aggregated per name and window (issue 17.8): its first failure and its lock.
    assert actions.count("login.failed") == 1 and actions.count("login.locked") == 1
    assert actions[-1] == "login.success"


def test_lock_applies_to_unknown_names_too(client, make_user, auth):
    """Guessing at a name that does not exist is throttled the same way."""
    make_user("ann")
    for _ in range(5):
        auth.login("ghost", "wrong-password")
    assert auth.login("ghost", "wrong-password").status_code == 429


def test_passwords_are_stored_only_as_bcrypt_hashes(app, make_user):
    """The stored value is a bcrypt hash at the configured cost, never the password."""
    make_user("ann")
    user = _in_db(app, lambda: User.get(User.username == "ann"))
    assert PASSWORD not in user.password_hash
    assert re.match(r"^\$2b\$04\$", user.password_hash)
    assert bcrypt.checkpw(PASSWORD.encode(), user.password_hash.encode())


def test_production_bcrypt_cost_is_at_least_12(app, monkeypatch):
    """The default cost a real shop gets is 12."""
    from crm.config import DEFAULTS

    assert DEFAULTS["BCRYPT_ROUNDS"] >= 12
    monkeypatch.setattr(user_service.Settings, "bcrypt_rounds", DEFAULTS["BCRYPT_ROUNDS"])
    assert user_service.hash_password(PASSWORD).startswith("$2b$12$")


def test_post_without_csrf_token_is_refused(app, client, admin):
    """A form POST without its CSRF token: 400 and nothing created."""
    count = _in_db(app, lambda: User.select().count())
    resp = client.post("/admin/users", data={"username": "mallory", "password": PASSWORD,
                                             "role": "admin"})
    assert resp.status_code == 400
    assert "页面已过期" in resp.get_data(as_text=True)
    assert _in_db(app, lambda: User.select().count()) == count
    resp = client.post("/admin/users", data={"username": "mallory", "password": PASSWORD,
                                             "role": "admin", "csrf_token": "forged"})
    assert resp.status_code == 400
    assert _in_db(app, lambda: User.select().count()) == count


def test_admin_creates_user_through_the_form(app, client, admin):
    """The admin's users page creates an operator; a duplicate name is refused."""
    token = csrf_token(client, "/admin/users")
    form = {"csrf_token": token, "username": "ann", "password": PASSWORD, "role": "operator",
            "display_name": "安安"}
    assert client.post("/admin/users", data=form).status_code == 302
    assert "安安" in client.get("/admin/users").get_data(as_text=True)
    resp = client.post("/admin/users", data=form)
    assert resp.status_code == 409
    assert "已被使用" in resp.get_data(as_text=True)
    assert _in_db(app, lambda: User.select().where(User.username == "ann").count()) == 1


def test_web_idle_session_expires(app, client, make_user, auth, clock):
    """A web login idle past its limit (480 minutes) is over; one in use slides on."""
    make_user("ann")
    auth.login("ann")
    assert client.get("/").status_code == 200
    clock.advance(minutes=470)
    assert client.get("/").status_code == 200  # used within the limit: it slides on
    clock.advance(minutes=470)
    assert client.get("/").status_code == 200
    clock.advance(minutes=481)
    assert client.get("/").status_code == 302


def test_disabled_user_is_logged_out_and_cannot_log_in(app, client, make_user, auth):
    """Disabling a user ends their session at the next request."""
    make_user("ann")
    auth.login("ann")
    _in_db(app, lambda: User.update(active=False).where(User.username == "ann").execute())
    assert client.get("/").status_code == 302
    assert auth.login("ann").status_code == 401


def test_menu_shows_each_role_only_what_it_may_use(client, make_user, auth):
    """Operators do not see admin menu entries; admins do."""
    make_user("ann")
    make_user("boss", role="admin")
    auth.login("ann")
    assert "系统用户" not in client.get("/").get_data(as_text=True)
    auth.logout()
    auth.login("boss")
    assert "系统用户" in client.get("/").get_data(as_text=True)


def test_next_parameter_only_redirects_within_the_site(client, make_user):
    """?next= may not send a user to another site after login: `/%09/evil.example` answered
    `Location: //evil.example` and `/%0a/evil.example` a 500; now both go home."""
    make_user("ann")
    token = csrf_token(client, "/login")
    for target, expected in (("/admin/users", "/admin/users"), ("//evil.example/", "/"),
                             ("https://evil.example/", "/"), ("/%09/evil.example", "/"),
                             ("/%0a/evil.example", "/"), ("/%0d%0a/evil.example", "/"),
                             ("/%5Cevil.example", "/"), ("%2F%2Fevil.example", "/"),
                             ("/%20/evil.example", "/"), ("/%00/x", "/"),
                             ("javascript:alert(1)", "/"), ("/customers?page=2", "/customers?page=2")):
        resp = client.post(f"/login?next={target}", data={"username": "ann", "password": PASSWORD,
                                                          "csrf_token": token})
        assert resp.status_code == 302 and resp.headers["Location"] == expected, target
        client.post("/logout", data={"csrf_token": csrf_token(client, "/")})
        token = csrf_token(client, "/login")


def test_create_admin_from_service_refuses_second_setup(app):
    """First-run setup is refused once any user exists."""
    from crm.errors import Conflict

    def run():
        user_service.create_first_admin(SYSTEM, "boss", PASSWORD)
        with pytest.raises(Conflict):
            user_service.create_first_admin(SYSTEM, "boss2", PASSWORD)

    _in_db(app, run)


def test_session_cookie_flags(client, make_user, auth):
    """The session cookie is HttpOnly and SameSite=Lax (scripts cannot read it; other sites
    cannot send it with their forms)."""
    make_user("ann")
    resp = auth.login("ann")
    cookie = next(h for h in resp.headers.getlist("Set-Cookie") if h.startswith("crm_session="))
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
