"""Bench: the 工作台 (home page), the most visited page, on a big shop.

    python bench/workbench.py [--url mysql://root@127.0.0.1:3306/crm_bench_workbench]
                              [--customers 100000] [--entries 1000000]

Fills a fresh bench database (dropped and re-created: never point --url at a shop's data) with
`crm seed-demo`'s generator (a year of entries, today's included), then times on the server
side: today's figures (the service), the whole home page for an operator and for an admin (whose
page also shows what needs attention), and, as the baseline in the same process, the whole
monitoring status the admin's home page ran on every visit before (issue 19.2).
"""

from _common import fill, fresh_app, logged_in, machine, size_args, timed

from crm import db as crm_db  # noqa: E402
from crm.models import CardRecord  # noqa: E402
from crm.services import Actor, monitor, workbench  # noqa: E402
from crm.services import users as user_service  # noqa: E402

PASSWORD = "bench-password-1"


def main():
    args = size_args(__doc__, "crm_bench_workbench")
    app, database = fresh_app(args.url)
    with app.app_context(), database.connection_context():
        print(machine(database))
        boss = user_service.create_user(Actor(), "boss", PASSWORD, role="admin")
        user_service.create_user(Actor(), "ann", PASSWORD)
        fill(database, boss, args)
        mine = workbench.today(boss.id)
        print(f"today: {mine.recharges} recharges, {mine.consumptions} consumptions "
              f"(of {CardRecord.select().count()} entries)")
        print("\nserver time:")
        print(f"  today's figures, the shop (service)     {timed(workbench.today, 15)}")
        print(f"  today's figures, one clerk (service)    {timed(lambda: workbench.today(boss.id), 15)}")
        print(f"  what needs attention (monitor.problems) {timed(lambda: monitor.problems(app.config), 15)}")
        print(f"  baseline: the whole monitoring status   {timed(lambda: monitor.status(app.config), 15)}")

    for username in ("ann", "boss"):
        client = logged_in(app, username, PASSWORD)

        def page(client=client):
            resp = client.get("/")
            assert resp.status_code == 200 and "工作台" in resp.get_data(as_text=True)

        print(f"  工作台 page, {username:4} (whole request)      {timed(page, 15)}")
    crm_db.close_all(database)


if __name__ == "__main__":
    main()
