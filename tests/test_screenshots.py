"""Screenshots for people to look at (issue 19): the counter, a card page, a statement, the
dashboard and the 工作台, at desktop and phone width, saved by the browser under
artifacts/screenshots/ (CRM_SCREENSHOTS to put them elsewhere; CI keeps the folder as its
artefact). The test checks each page drew (its heading) and each file is a real PNG."""
import os
from pathlib import Path

import pytest
from playwright.sync_api import expect

from crm.config import PROJECT_ROOT
from tests.ledger_helpers import furnished_shop
from tests.test_browser import PHONE, log_in

FOLDER = Path(os.environ.get("CRM_SCREENSHOTS") or Path(PROJECT_ROOT) / "artifacts" / "screenshots")
DESKTOP = {"width": 1280, "height": 800}


@pytest.mark.backends("sqlite")
def test_screenshots_of_the_main_pages_at_both_widths(app, page):
    shop, ids = furnished_shop(app)
    log_in(page, "ann")
    pages = {"workbench": ("/", "工作台"), "counter": ("/consume?q=1380", "消费收银"),
             "card": (f"/cards/{ids['card_id']}", "会员卡"),
             "statement": (f"/customers/{ids['customer_id']}/statement?preset=month", "对账单"),
             "dashboard": ("/stats", "统计分析")}
    FOLDER.mkdir(parents=True, exist_ok=True)
    made = []
    for width_name, size in (("desktop", DESKTOP), ("phone", PHONE)):
        page.set_viewport_size(size)
        for name, (url, heading) in pages.items():
            page.goto(url)
            page.wait_for_load_state("networkidle")
            expect(page.locator("main h1").first).to_contain_text(heading)
            target = FOLDER / f"{name}-{width_name}.png"
            page.screenshot(path=str(target), full_page=True)
            made.append(target)
    for target in made:
        data = target.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, target
