"""The main flows in a real browser (Debian's chromium through Playwright)."""
import re

from playwright.sync_api import expect

from tests.conftest import PASSWORD


def test_first_run_setup_login_home_logout(page):
    """First-run setup → logout → login → the home page shows the user's name → logout."""
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/setup$"))
    page.fill("#username", "boss")
    page.fill("#display_name", "王店长")
    page.fill("#password", PASSWORD)
    page.fill("#password2", PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator("#welcome-name")).to_have_text("王店长")
    page.click("text=退出")
    expect(page).to_have_url(re.compile(r"/login$"))
    expect(page.locator(".alert")).to_contain_text("您已安全退出")

    page.fill("#username", "boss")
    page.fill("#password", "wrong-password")
    page.press("#password", "Enter")
    expect(page.locator(".alert")).to_contain_text("用户名或密码错误")
    page.fill("#username", "boss")
    page.fill("#password", PASSWORD)
    page.press("#password", "Enter")  # Enter submits a plain form
    expect(page.locator("#welcome-name")).to_have_text("王店长")
    expect(page.locator("#current-user")).to_contain_text("管理员")
    expect(page.locator("#side-menu")).to_contain_text("系统用户")
    page.click("text=退出")
    expect(page).to_have_url(re.compile(r"/login$"))
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login"))


def test_phone_width_menu(page, make_user):
    """At phone width the side menu folds behind a button and still opens."""
    make_user("ann", display_name="安安")
    page.set_viewport_size({"width": 375, "height": 740})
    page.goto("/login")
    page.fill("#username", "ann")
    page.fill("#password", PASSWORD)
    page.press("#password", "Enter")
    expect(page.locator("#welcome-name")).to_have_text("安安")
    expect(page.locator("#side-menu")).not_to_be_visible()
    page.click(".navbar-toggler")
    expect(page.locator("#side-menu")).to_be_visible()
    expect(page.locator("#side-menu")).not_to_contain_text("系统用户")  # operator
