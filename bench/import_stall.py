"""Bench: how long a charge at the till waits while a large customer import runs (issue 16.2).

    python bench/import_stall.py [--rows 50000] [--url sqlite:///…|mysql://…]

Makes a fresh bench database (SQLite in a temporary folder by default; a MySQL URL is dropped
and re-created: never point it at a shop's data), a shop with a card holding money, and a sheet
of `--rows` customers (every other one with a card number and an opening balance). One thread
imports the sheet through the import service (as the confirm button does); another charges
¥0.01 on the card every 50 ms through the money service, each in its own transaction, until the
import ends. Prints the import's time, the charges' waits (p50, p99, max) and any refused.
"""
import argparse
import io
import statistics
import sys
import tempfile
import threading
import time
import uuid

from _common import recreate_mysql

from crm import create_app  # noqa: E402
from crm import db as crm_db  # noqa: E402
from crm.services import SYSTEM, Actor, cards, customer_import, customers  # noqa: E402
from crm.services import users as user_service  # noqa: E402


def sheet(rows):
    """An .xlsx of `rows` customers; every other row opens a card with an opening balance."""
    import openpyxl

    book = openpyxl.Workbook(write_only=True)
    page = book.create_sheet("客户")
    page.append(customer_import.COLUMNS)
    for n in range(rows):
        card = (f"IMP{n:07d}", "12.34") if n % 2 == 0 else ("", "")
        page.append((f"导入客户{n}", "女", f"139{n:08d}", "某路 1 号", "", "", "", *card))
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--url", default="")
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="crm-bench-import-")
    url = args.url or f"sqlite:///{folder}/bench.db"
    if url.startswith("mysql"):
        recreate_mysql(url)
    app = create_app({"DATABASE_URL": url, "INSTANCE_PATH": folder, "BCRYPT_ROUNDS": 4})
    database = app.extensions["crm_db"]
    crm_db.migrate(database)
    with app.app_context(), database.connection_context():
        clerk = Actor(user_service.create_user(SYSTEM, "clerk", "bench-password-1"), "bench")
        owner = Actor(user_service.create_user(SYSTEM, "owner", "bench-password-1", role="admin"),
                      "bench")
        customer = customers.create_customer(SYSTEM, {"name": "常客", "phone": "13800000000"})
        card_id = cards.open_card(clerk, customer.id, uuid.uuid4().hex, amount=5_000_000).card_id
    data = sheet(args.rows)
    print(f"sheet: {args.rows} rows, {len(data) / 1024:.0f} KB; database: "
          f"{'MariaDB' if url.startswith('mysql') else 'SQLite'}")

    done, waits, refused, outcome = threading.Event(), [], [], {}

    def importer():
        with app.app_context(), database.connection_context():
            started = time.perf_counter()
            try:
                outcome["result"] = customer_import.run(owner, data, "bench.xlsx")
            except Exception as error:  # noqa: BLE001 — the bench reports it
                outcome["error"] = repr(error)
            outcome["seconds"] = time.perf_counter() - started
        done.set()

    def till():
        with app.app_context(), database.connection_context():
            while not done.is_set():
                started = time.perf_counter()
                try:
                    cards.consume(clerk, card_id, uuid.uuid4().hex, 1)
                except Exception as error:  # noqa: BLE001 — a refused charge is a finding
                    refused.append(type(error).__name__)
                waits.append(time.perf_counter() - started)
                time.sleep(0.05)

    threads = [threading.Thread(target=importer), threading.Thread(target=till)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    crm_db.close_all(database)
    waits.sort()
    result = outcome.get("result")
    imported = getattr(result, "imported", result)
    print(f"import: {outcome['seconds']:.1f} s, imported {imported}"
          + (f", parts {result.parts}" if hasattr(result, "parts") else "")
          + (f", error {outcome['error']}" if "error" in outcome else ""))
    print(f"charges during the import: {len(waits)}, refused {len(refused)} {sorted(set(refused))}")
    print(f"charge wait: p50 {statistics.median(waits) * 1000:.0f} ms, "
          f"p99 {waits[int(len(waits) * 0.99)] * 1000:.0f} ms, max {waits[-1] * 1000:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
