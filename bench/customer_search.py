"""Bench: customer search over 100,000 customers (default MariaDB), and the 10,000-row import.

    python bench/customer_search.py [--url mysql://root@127.0.0.1:3306/crm_bench] [--customers 100000]

Creates (or empties) the bench database, fills it, then prints per query kind the server time of
the search service and of the whole page request (p50 / p95 / max, ms). The database named in
--url is dropped and re-created: never point it at a shop's data.
"""
import argparse
import io
import platform
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import openpyxl  # noqa: E402
from _common import recreate_mysql  # noqa: E402

from crm import create_app  # noqa: E402
from crm import db as crm_db  # noqa: E402
from crm.models import Counter, Customer, CustomerType, User  # noqa: E402
from crm.search_index import CustomerGram  # noqa: E402
from crm.services import SYSTEM, customer_import, customers  # noqa: E402
from crm.services.demo import fake_customers  # noqa: E402


def recreate(url):
    """Drop and create the bench database; return a migrated peewee database."""
    if url.startswith("mysql"):
        recreate_mysql(url)
    else:
        path = Path(url[len("sqlite:///"):])
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
    database = crm_db.database_from_url(url)
    crm_db.db.initialize(database)
    crm_db.migrate(database)
    return database


def fill(database, count):
    """Bulk-insert `count` customers spread over five types."""
    started = time.perf_counter()
    with database.connection_context():
        types = [CustomerType.create(name=n) for n in ("普通客户", "VIP客户", "金卡会员", "银卡会员",
                                                       "员工")]
        rng = random.Random(7)
        batch = []
        with database.atomic():
            first = Counter.take("customer", count)
            for i, row in enumerate(fake_customers(count)):
                number = customers.format_number(first + i)
                row.update(customer_no=number,
                           search_text=Customer.make_search_text(row["name"], row["phone"], number),
                           type=rng.choice(types).id, archived=rng.random() < 0.03)
                batch.append(row)
                if len(batch) == 2000:
                    Customer.insert_many(batch).execute()
                    batch = []
            if batch:
                Customer.insert_many(batch).execute()
            CustomerGram.rebuild()
        if crm_db.is_mysql(database):
            database.execute_sql("ANALYZE TABLE t_customer")
    return time.perf_counter() - started


def timed(fn, repeat):
    samples = []
    for args in repeat:
        start = time.perf_counter()
        fn(*args)
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def summary(samples):
    samples = sorted(samples)
    p95 = samples[min(len(samples) - 1, int(len(samples) * 0.95))]
    return f"p50 {statistics.median(samples):6.1f}  p95 {p95:6.1f}  max {samples[-1]:6.1f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="mysql://root@127.0.0.1:3306/crm_bench")
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--import-rows", type=int, default=10_000)
    args = parser.parse_args()

    database = recreate(args.url)
    seconds = fill(database, args.customers)
    print(f"machine: {platform.node()} · {platform.processor() or platform.machine()} · "
          f"python {platform.python_version()} · {args.url.split(':')[0]}")
    print(f"filled {args.customers} customers in {seconds:.1f} s")

    app = create_app({"DATABASE_URL": args.url, "TESTING": True, "BCRYPT_ROUNDS": 4,
                      "INSTANCE_PATH": str(Path("/tmp/crm-bench-instance"))})
    with database.connection_context():
        rng = random.Random(3)
        sample = list(Customer.select(Customer.phone, Customer.name, Customer.customer_no)
                      .order_by(Customer.id).limit(2000))
        picks = [rng.choice(sample) for _ in range(60)]
        kinds = {
            "last 4 digits of phone": [(c.phone[-4:],) for c in picks],
            "full phone": [(c.phone,) for c in picks],
            "name part (2 chars)": [(c.name[:2],) for c in picks],
            "customer number": [(c.customer_no,) for c in picks],
            "no query, newest first": [("",)] * 30,
        }
        print("\nsearch service (server time, ms), 20 per page with total:")
        for label, queries in kinds.items():
            customers.search(queries[0][0])  # warm
            print(f"  {label:28s} {summary(timed(customers.search, queries))}")
        for sort in ("name", "last_visit"):
            samples = timed(lambda s=sort: customers.search("", sort=s, page=100), [()] * 20)
            print(f"  {'sort ' + sort + ', page 100':28s} {summary(samples)}")
            samples = timed(lambda q, s=sort: customers.search(q, sort=s),
                            kinds["name part (2 chars)"][:20])
            print(f"  {'name part, sort ' + sort:28s} {summary(samples)}")
        type_id = CustomerType.get(CustomerType.name == "VIP客户").id
        samples = timed(lambda q: customers.search(q, type_id=type_id),
                        kinds["last 4 digits of phone"][:20])
        print(f"  {'last 4 digits + type filter':28s} {summary(samples)}")
        samples = timed(lambda: customers.search("", archived=None), [()] * 20)
        print(f"  {'all incl. archived':28s} {summary(samples)}")

    client = app.test_client()
    with app.app_context(), database.connection_context():
        User.create(username="bench", password_hash=_hash(), role="admin")
    _login(client)
    print("\nsearch page request (whole Flask request incl. template, ms):")
    for label, queries in (("last 4 digits of phone", kinds["last 4 digits of phone"]),
                           ("name part (2 chars)", kinds["name part (2 chars)"])):
        def page(q):
            resp = client.get("/customers", query_string={"q": q}, headers={"HX-Request": "true"})
            assert resp.status_code == 200 and "customer-table" in resp.get_data(as_text=True)

        samples = timed(page, queries)
        print(f"  {label:28s} {summary(samples)}")

    if args.import_rows:
        book = openpyxl.Workbook(write_only=True)
        sheet = book.create_sheet("客户")
        sheet.append(["姓名", "性别", "电话", "地址", "客户类型", "生日", "备注"])
        for row in fake_customers(args.import_rows, seed=99, start=10_000_000):
            sheet.append([row["name"], row["gender"], int(row["phone"]), row["address"], "VIP客户",
                          "1990-05-01", row["remark"]])
        data = io.BytesIO()
        book.save(data)
        with app.app_context(), database.connection_context():
            start = time.perf_counter()
            preview = customer_import.preview(data.getvalue())
            previewed = time.perf_counter() - start
            count = customer_import.run(SYSTEM, data.getvalue(), "bench.xlsx")
            total = time.perf_counter() - start
        print(f"\nimport of {args.import_rows} rows: preview {previewed:.2f} s, preview + import "
              f"{total:.2f} s ({count} imported, {len(preview.bad_rows)} refused)")
    crm_db.close_all(database)


def _hash():
    import bcrypt

    return bcrypt.hashpw(b"bench-password", bcrypt.gensalt(4)).decode()


def _login(client):
    import re

    html = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
    resp = client.post("/login", data={"username": "bench", "password": "bench-password",
                                       "csrf_token": token})
    assert resp.status_code == 302, resp.get_data(as_text=True)


if __name__ == "__main__":
    main()
