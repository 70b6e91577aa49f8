"""接口文档: the admin page that shows the OpenAPI document in the vendored Swagger UI."""
import re

import pytest
from playwright.sync_api import expect

from crm.web import CSP
from tests.conftest import PASSWORD


@pytest.mark.backends("sqlite")
def test_api_docs_admin_only_under_the_site_csp(client, make_user, auth):
    """Anonymous goes to the login page, an operator gets 403, an admin gets the page with the
    site's own CSP (no relaxation) and the vendored viewer (no CDN)."""
    make_user("boss", role="admin")
    make_user("ann")
    resp = client.get("/admin/api-docs")
    assert resp.status_code == 302 and "/login" in resp.headers["Location"]
    auth.login("ann")
    assert client.get("/admin/api-docs").status_code == 403
    assert "/admin/api-docs" not in client.get("/").get_data(as_text=True)  # not in her menu
    auth.logout()
    auth.login("boss")
    assert 'href="/admin/api-docs"' in client.get("/").get_data(as_text=True)
    resp = client.get("/admin/api-docs")
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200 and resp.headers["Content-Security-Policy"] == CSP
    assert "/static/vendor/swagger-ui-" in html and "/static/js/api-docs.js" in html
    assert not re.search(r"<script(?![^>]*\ssrc=)", html)  # no inline script
    assert not re.search(r"""src=["']?(?:https?:)?//""", html)  # nothing from elsewhere


@pytest.mark.backends("sqlite")
def test_api_docs_page_offline_and_try_it_out(page, make_user):
    """With every request off this machine blocked (and none attempted), the page draws the
    operations of /api/openapi.json under the site's CSP (a violation is a console error, which
    fails the test), and "Try it out" calls the API with the token typed into "Authorize"."""
    off_machine = []

    def block(route):
        off_machine.append(route.request.url)
        route.abort()

    page.route(lambda url: not url.startswith(("http://127.0.0.1", "http://localhost")), block)
    make_user("boss", role="admin")
    page.goto("/login")
    page.fill("#username", "boss")
    page.fill("#password", PASSWORD)
    page.press("#password", "Enter")
    page.click("#side-menu >> text=接口文档")
    expect(page).to_have_title(re.compile("^接口文档"))
    docs = page.locator("#swagger-ui")
    expect(docs).to_have_attribute("data-ready", "1")
    operation = docs.locator("#operations-default-getCustomer")
    expect(operation).to_contain_text("/api/v1/customers/{customer_id}")
    expect(operation).to_contain_text("客户详情")

    token = page.request.post("/api/v1/login", data={"username": "boss", "password": PASSWORD})
    page.click(".swagger-ui .btn.authorize")
    page.fill(".swagger-ui .modal-ux input", token.json()["token"])
    page.click(".swagger-ui .modal-ux button[type=submit]")
    page.click(".swagger-ui .modal-ux button.btn-done")
    me = docs.locator("#operations-default-me")
    me.locator(".opblock-summary-control").click()
    me.locator(".try-out__btn").click()
    me.locator(".execute").click()
    expect(me.locator(".live-responses-table")).to_contain_text('"username": "boss"')
    assert off_machine == []


def test_every_api_answer_in_the_suite_is_checked_against_the_document(app, client, api_token):
    """The suite's test client checks each API answer (tests/answers.py): an undeclared status
    or a body that does not fit its schema fails the test that got it."""
    import pytest
    from flask import Response

    from tests.answers import CheckedClient, check_answer

    assert isinstance(client, CheckedClient)
    headers = api_token("ann")
    assert client.get("/api/v1/customers", headers=headers).status_code == 200  # checked, fits
    with pytest.raises(AssertionError, match="does not declare"):
        check_answer("GET", "/api/v1/customers", Response(status=418))
    drifted = Response('{"items": "not a list", "total": 0}', status=200,
                       mimetype="application/json")
    with pytest.raises(AssertionError, match="does not fit the document"):
        check_answer("GET", "/api/v1/customers", drifted)
