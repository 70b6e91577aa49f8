"""A quiet server window (issue 19.11): no third-party font or library chatter in the window
or the log; one line per backup and per error (the traceback goes to the log file only)."""
import io
import logging

import pytest

from crm import launcher, quiet_libraries
from crm.services import backups, pdf
from tests.ledger_helpers import make_shop, run


class Kept(logging.Handler):
    """What the log file would get: every record that reaches the root logger's handlers."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.records = []

    def emit(self, record):
        self.records.append(record)


@pytest.fixture
def window():
    """The server window's handler (crm.launcher), writing into a buffer, with the root logger
    at INFO as a served app has it; and what the log file would receive."""
    quiet_libraries()
    root = logging.getLogger()
    level, root.level = root.level, logging.INFO
    handler, kept = launcher._quiet_console(), Kept()
    buffer = io.StringIO()
    handler.setStream(buffer)
    root.addHandler(kept)
    try:
        yield buffer, kept
    finally:
        root.removeHandler(handler)
        root.removeHandler(kept)
        root.setLevel(level)


def test_a_pdf_leaves_no_font_chatter(app, window):
    """fpdf2's font subsetting (fontTools) logs every table it prunes at INFO: neither the log
    file nor the window gets it."""
    buffer, kept = window
    doc = pdf.document(width_mm=80, height_mm=80, margin_mm=4)
    doc.add_page()
    doc.set_font("text", "", 12)
    doc.cell(0, 6, "消费凭证")
    doc.output()
    assert [r.name for r in kept.records if r.name.startswith(("fontTools", "fpdf"))] == []
    assert buffer.getvalue() == ""


def test_one_line_per_backup_and_per_error(app, window):
    window, _ = window
    shop = make_shop(app)
    info = run(app, lambda: backups.create(app.config["BACKUP_DIR"], "manual", "店", shop.admin))
    assert window.getvalue() == f"已备份 {info['name']}（已核对）\n"
    window.truncate(0), window.seek(0)
    try:
        raise ValueError("磁盘已满\n第二行")
    except ValueError:
        logging.getLogger("crm.web").exception("处理 /cards/1 时出错")
    line = window.getvalue()
    assert line.count("\n") == 1 and line.startswith("出错：处理 /cards/1 时出错")
    assert "ValueError" in line and "Traceback" not in line and "logs/crm.log" in line
    logging.getLogger("crm.launcher").info("server process 2 serving")
    logging.getLogger("apscheduler.scheduler").warning("Run time of job was missed")
    assert window.getvalue() == line  # neither reaches the window
