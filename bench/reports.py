"""Bench: statements, the dashboard and the Excel export on a big shop.

    python bench/reports.py [--url mysql://root@127.0.0.1:3306/crm_bench_reports]
                            [--customers 100000] [--entries 1000000]

Fills a fresh bench database (dropped and re-created: never point --url at a shop's data) with
`crm seed-demo`'s generator: one customer with 10,000 entries, one with 50,000, the rest spread
over a year. Then times, on the server side: the 30-day dashboard (service and whole page),
a statement page of the 10,000-entry customer (first and last page, whole year), and the
50,000-row statement export to Excel (in a child process, to measure its peak memory).
"""
import argparse
import datetime
import resource
import subprocess
import sys
import time

from _common import fresh_app, logged_in, machine, timed

from crm import clock, create_app  # noqa: E402
from crm import db as crm_db  # noqa: E402
from crm.models import Customer, User  # noqa: E402
from crm.services import (  # noqa: E402
    Actor,  # noqa: E402
    demo,
    statement_export,
    statements,
    stats,
)
from crm.services import users as user_service  # noqa: E402


def export_child(url, instance, customer_id, start, end):
    """Run in a child process: export the statement, print seconds and peak RSS."""
    app = create_app({"DATABASE_URL": url, "INSTANCE_PATH": instance})
    with app.app_context(), app.extensions["crm_db"].connection_context():
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        started = time.perf_counter()
        data = statement_export.xlsx("压测小店", customer_id, start, end)
        seconds = time.perf_counter() - started
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"{seconds:.2f} {peak / 1024:.0f} {before / 1024:.0f} {len(data)}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="mysql://root@127.0.0.1:3306/crm_bench_reports")
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        url, instance, customer_id, start, end = args.child
        export_child(url, instance, int(customer_id), datetime.date.fromisoformat(start),
                     datetime.date.fromisoformat(end))
        return

    app, database = fresh_app(args.url)
    with app.app_context(), database.connection_context():
        print(machine(database))
        boss = user_service.create_user(Actor(), "bench", "bench-password-1", role="admin")
        started = time.perf_counter()
        made = demo.seed_bulk(database, boss, customers=args.customers, entries=args.entries,
                              heavy=(10_000, 50_000))
        print(f"filled {args.customers} customers and {made} entries in "
              f"{time.perf_counter() - started:.0f} s")
        heavy, huge = [c.id for c in Customer.select(Customer.id).order_by(Customer.id).limit(2)]
        today = clock.today()
        month = today - datetime.timedelta(days=29)
        year = today - datetime.timedelta(days=365)
        print("\nserver time:")
        print(f"  dashboard, 30 days (service)           {timed(lambda: stats.dashboard(month, today))}")
        print(f"  statement 10,000 entries, first page   "
              f"{timed(lambda: statements.statement(heavy, year, today, page=1))}")
        print(f"  statement 10,000 entries, last page    "
              f"{timed(lambda: statements.statement(heavy, year, today, page=200))}")
        assert User.select().count() == 1

    client = logged_in(app, "bench", "bench-password-1")

    def page(path):
        resp = client.get(path)
        assert resp.status_code == 200, resp.status_code

    print(f"  dashboard page, 30 days (whole request) "
          f"{timed(lambda: page(f'/stats?start={month}&end={today}'))}")
    print(f"  statement page, 10,000 entries          "
          f"{timed(lambda: page(f'/customers/{heavy}/statement?start={year}&end={today}'))}")

    instance = app.config["INSTANCE_PATH"]
    result = subprocess.run([sys.executable, __file__, "--child", args.url, instance, str(huge),
                             year.isoformat(), today.isoformat()], capture_output=True, text=True,
                            check=True)
    seconds, peak, before, size = result.stdout.split()
    print(f"\nExcel export of the 50,000-entry statement: {seconds} s, peak memory {peak} MB "
          f"(process before export {before} MB), file {int(size) / 1e6:.1f} MB")
    crm_db.close_all(database)


if __name__ == "__main__":
    main()
