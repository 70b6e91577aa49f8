"""Bench: the statement PDF, before and after its cap (issue 17.7).

    python bench/statement_pdf.py [--entries 50000] [--before]

Fills a fresh SQLite bench database (a temporary folder) with `crm seed-demo`'s generator: one
customer with `--entries` entries over a year, one with as many as the PDF cap allows. Then, each
in a child process to measure its peak memory: the PDF of the capped customer (the largest PDF
now made), the PDF of the big one with the cap lifted (what every such request cost before), and
the big one's request as it is now (refused at once, Excel offered).
"""
import argparse
import datetime
import resource
import subprocess
import sys
import tempfile
import time

import _common  # noqa: F401 — puts the project on the path

from crm import clock, create_app  # noqa: E402
from crm import db as crm_db  # noqa: E402
from crm.errors import CrmError  # noqa: E402
from crm.models import Customer  # noqa: E402
from crm.services import SYSTEM, demo, statement_export  # noqa: E402
from crm.services import users as user_service  # noqa: E402


def child(url, instance, customer_id, lift):
    """In a child process: one statement PDF of the last year; prints seconds, peak MB, bytes."""
    app = create_app({"DATABASE_URL": url, "INSTANCE_PATH": instance})
    if lift:
        statement_export.PDF_MAX_ENTRIES = None
    today = clock.today()
    with app.app_context(), app.extensions["crm_db"].connection_context():
        started = time.perf_counter()
        try:
            size = len(statement_export.pdf_bytes("压测小店", customer_id,
                                                  today - datetime.timedelta(days=365), today))
        except CrmError as error:
            size = f"refused:{error.code}"
        seconds = time.perf_counter() - started
    print(f"{seconds:.2f} {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} {size}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=50_000)
    parser.add_argument("--before", action="store_true",
                        help="also time the big PDF with the cap lifted (minutes)")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        url, instance, customer_id, lift = args.child
        child(url, instance, int(customer_id), lift == "1")
        return 0
    instance = tempfile.mkdtemp(prefix="crm-bench-pdf-")
    url = f"sqlite:///{instance}/bench.db"
    app = create_app({"DATABASE_URL": url, "INSTANCE_PATH": instance, "BCRYPT_ROUNDS": 4})
    database = app.extensions["crm_db"]
    crm_db.migrate(database)
    cap = statement_export.PDF_MAX_ENTRIES
    with app.app_context(), database.connection_context():
        boss = user_service.create_user(SYSTEM, "bench", "bench-password-1", role="admin")
        demo.seed_bulk(database, boss, customers=3, entries=args.entries + cap + 10,
                       heavy=(args.entries, cap), days=360)
        big, capped = [c.id for c in Customer.select(Customer.id).order_by(Customer.id).limit(2)]
    crm_db.close_all(database)
    print(f"SQLite; statement PDF cap {cap} entries; one year of entries per customer")
    runs = [(f"{cap:,} entries (the largest PDF now)", capped, "0"),
            (f"{args.entries:,} entries, now", big, "0")]
    if args.before:
        runs.insert(1, (f"{args.entries:,} entries, cap lifted (before)", big, "1"))
    for label, customer_id, lift in runs:
        out = subprocess.run([sys.executable, __file__, "--child", url, instance,
                              str(customer_id), lift], capture_output=True, text=True, check=True)
        seconds, peak, size = out.stdout.split()
        print(f"  {label:42} {float(seconds):7.2f} s  peak {peak:>4} MB  {size}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
