"""Plausible shop data for demos, benchmarks and load tests: Chinese names, valid phones, and a
year of sealed, balanced ledger entries."""
import datetime
import queue
import random
import threading

from peewee import fn
from pymysql.converters import escape_string

from crm import clock

SURNAMES = ("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程"
            "苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严")
GIVEN = ("伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华玉兰萍红娥玲芬燕彬鹏辉建国建华"
         "志强晓东晓红婷婷欣怡子涵浩然宇轩梓萱一诺思远佳怡雨桐俊杰嘉怡文博")
MOBILE_PREFIXES = ("130", "131", "132", "133", "135", "136", "137", "138", "139", "150", "151",
                   "152", "155", "156", "157", "158", "159", "166", "176", "177", "178", "180",
                   "181", "182", "183", "185", "186", "187", "188", "189", "191", "198", "199")
DISTRICTS = ("朝阳区建国路", "海淀区中关村大街", "浦东新区世纪大道", "天河区体育西路", "南山区科技园",
             "西湖区文三路", "武侯区人民南路", "江汉区解放大道", "鼓楼区中山路", "雁塔区小寨东路")


def names(rng):
    """An endless stream of Chinese full names."""
    while True:
        given = "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2, 2))))
        yield rng.choice(SURNAMES) + given


def fake_customers(count, seed=42, start=0):
    """`count` customer dicts with unique mobile numbers (deterministic for a seed)."""
    rng = random.Random(seed)
    name_stream = names(rng)
    # Unique, scattered phones: i → i·7919 mod 10^8 is one-to-one (7919 is prime to 10^8).
    for i in range(start, start + count):
        prefix = MOBILE_PREFIXES[i % len(MOBILE_PREFIXES)]
        number = i * 7919 % 100_000_000
        yield {
            "name": next(name_stream),
            "gender": rng.choice(("男", "女", "女", "未知")),
            "phone": f"{prefix}{number:08d}",
            "address": f"{rng.choice(DISTRICTS)}{rng.randint(1, 999)}号",
            "remark": rng.choice(("", "", "", "喜欢靠窗座位", "对花生过敏", "老客户介绍")),
        }


# --- bulk demo data: customers, cards and a year of sealed ledger entries ---------------------

TYPES = (("普通客户", None), ("VIP客户", 95), ("金卡会员", 90), ("银卡会员", 98), ("员工", 80))


TABLE_ORDER = ("customer", "card", "record", "sale", "gram")  # parents first


def _ahead(items, depth=2):
    """Iterate `items`, produced by a thread of their own up to `depth` ahead: the generator's
    Python work overlaps the database's inserts, which wait on the socket (not the GIL)."""
    waiting = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def offer(message):
        while not stop.is_set():
            try:
                waiting.put(message, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def produce():
        try:
            for item in items:
                if not offer(("item", item)):
                    return
            offer(("done", None))
        except BaseException as error:  # noqa: BLE001 — handed to the consuming thread
            offer(("error", error))

    thread = threading.Thread(target=produce, name="demo-generator", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = waiting.get()
            if kind == "error":
                raise value
            if kind == "done":
                return
            yield value
    finally:
        stop.set()
        thread.join()


def _insert_params(cursor, statement, rows):
    """Bulk insert through the driver's parameters (SQLite: executemany runs in C)."""
    cursor.executemany(statement, rows)


def _mysql_literal(value):
    if value is None:
        return "NULL"
    if isinstance(value, int):  # bool included
        return str(int(value))
    return "'" + escape_string(value) + "'"


def _insert_literal(cursor, statement, rows, chunk=2000):
    """Bulk insert for MySQL with the VALUES written here: PyMySQL's executemany escapes every
    value through its generic converters, which took half of the generator's time. Only for
    the generator's own rows (ints, text, None), never for user input."""
    head = statement[:statement.index(" VALUES (")]
    for start in range(0, len(rows), chunk):
        cursor.execute(head + " VALUES " + ",".join(
            "(" + ",".join(map(_mysql_literal, row)) + ")" for row in rows[start:start + chunk]))


def _entry_times(rng, count, days, latest):
    """`count` sorted times over the last `days` days up to `latest` (none in the future), in
    opening hours (09–21), more at weekends."""
    times = []
    while len(times) < count:
        day = latest.date() - datetime.timedelta(days=rng.randrange(days))
        if day.weekday() < 5 and rng.random() < 0.3:
            continue  # weekdays are quieter
        moment = datetime.datetime.combine(day, datetime.time(rng.randrange(9, 21),
                                                              rng.randrange(60), rng.randrange(60)))
        # Later today than now: the same hour a day earlier (this loop always ends).
        times.append(moment if moment <= latest else moment - datetime.timedelta(days=1))
    return sorted(times)


def _card_history(rng, card_id, customer_id, operator_id, count, times, first_id):
    """A card's entries (valid balances, sealed chain) and its consume records."""
    from crm.services import ledger

    paid = bonus = 0
    head, records, sales, key = "", [], [], ledger.current_key()
    for seq in range(1, count + 1):
        when = times[seq - 1]
        if seq == 1 or paid + bonus < 3000 or rng.random() < 0.3:
            amount = rng.choice((10000, 20000, 30000, 50000, 100000))
            lines = [("recharge", amount, 0, rng.choice(("cash", "wechat", "alipay", "card")))]
            if amount >= 50000 and rng.random() < 0.5 and seq < count:
                lines.append(("bonus", 0, amount // 10, ""))
        else:
            charge = min(paid + bonus, rng.randrange(500, 8000))
            from_paid = min(paid, charge)
            lines = [("consume", -from_paid, -(charge - from_paid), "")]
            if rng.random() < 0.02:  # now and then a sale is undone at the counter (冲正)
                lines.append(("reversal", from_paid, charge - from_paid, ""))
        for kind, paid_delta, bonus_delta, method in lines:
            if len(records) == count:
                break
            paid += paid_delta
            bonus += bonus_delta
            reverses = records[-1]["id"] if kind == "reversal" else None
            entry = {"card": card_id, "customer": customer_id, "seq": len(records) + 1,
                     "business_type": kind, "amount": paid_delta + bonus_delta,
                     "paid_delta": paid_delta, "bonus_delta": bonus_delta,
                     "balance_after": paid + bonus, "paid_after": paid, "bonus_after": bonus,
                     "payment_method": method, "reverses": reverses, "operator": operator_id,
                     "request_id": "", "remark": f"冲正 #{reverses}：顾客退单" if reverses else "",
                     "created_at": when, "prev_hash": head}
            entry["hash"] = head = ledger.seal(entry, head, key)
            entry["id"] = first_id + len(records)
            records.append(entry)
            if kind in ("consume", "reversal"):  # a reversal's sale row is the negative one
                sales.append((card_id, customer_id, entry["id"], -entry["amount"], None,
                              -entry["amount"], entry["balance_after"], operator_id, "",
                              entry["remark"], clock.as_text(when)))
    card = {"money": paid + bonus, "paid_money": paid, "bonus_money": bonus,
            "entry_count": len(records), "chain_head": head}
    return records, sales, card


def seed_bulk(database, operator, customers=1000, entries=10000, heavy=(), seed=7, days=365,
              progress=None):
    """Fill an empty shop with `customers` customers (one card each) and `entries` ledger entries
    over the last `days` days, sealed and balanced, with consume records. `heavy` lists entry
    counts for the first customers (e.g. one with 10,000). Bulk inserts, explicit ids."""
    from crm.db import is_mysql
    from crm.models import Card, CardRecord, Counter, Customer, CustomerType
    from crm.search_index import CustomerGram
    from crm.services import ledger
    from crm.services.cards import generated_card_no
    from crm.services.customers import format_number

    rng = random.Random(seed)
    p = database.param
    latest = clock.now()
    type_ids = []
    for name, discount in TYPES:
        found = CustomerType.get_or_none(CustomerType.name == name)
        type_ids.append((found or CustomerType.create(name=name, discount=discount)).id)
    counts = list(heavy) + [0] * (customers - len(heavy))
    rest = entries - sum(heavy)
    spread = customers - len(heavy)
    for index in range(len(heavy), customers):
        counts[index] = rest // spread + (1 if index - len(heavy) < rest % spread else 0)
    first_customer = (Customer.select(fn.MAX(Customer.id)).scalar() or 0) + 1
    first_card = (Card.select(fn.MAX(Card.id)).scalar() or 0) + 1
    next_record = (CardRecord.select(fn.MAX(CardRecord.id)).scalar() or 0) + 1
    customer_no = Counter.take("customer", customers)
    card_no = Counter.take("card", customers)
    record_columns = ", ".join(ledger.RECORD_COLUMNS)  # with explicit ids
    sql = {
        "customer": f"INSERT INTO t_customer (id, customer_no, name, gender, phone, address, "
                    f"type_id, remark, archived, created_at, updated_at, last_visit_at, "
                    f"search_text) VALUES ({', '.join([p] * 13)})",
        "card": f"INSERT INTO t_card (id, card_no, customer_id, status, money, paid_money, "
                f"bonus_money, entry_count, chain_head, remark, created_at, updated_at, "
                f"owner_seal) VALUES ({', '.join([p] * 13)})",
        "record": f"INSERT INTO t_card_record ({record_columns}) "
                  f"VALUES ({', '.join([p] * len(ledger.RECORD_COLUMNS))})",
        "sale": "INSERT INTO t_consume_record (card_id, customer_id, card_record_id, "
                "original_amount, discount, amount, balance_after, operator_id, request_id, "
                f"remark, created_at) VALUES ({', '.join([p] * 11)})",
        "gram": f"INSERT INTO t_customer_gram (gram, customer_id) VALUES ({p}, {p})",
    }
    people = fake_customers(customers, seed=seed, start=first_customer)
    stamp = clock.as_text(clock.now())
    key = ledger.current_key()
    insert = _insert_literal if is_mysql(database) else _insert_params

    def batches():
        """The rows, a batch at a time, with (customers done, entries made)."""
        record_id, made = next_record, 0
        batch = {name: [] for name in TABLE_ORDER}
        for index in range(customers):
            customer_id, card_id = first_customer + index, first_card + index
            number = format_number(customer_no + index)
            person = next(people)
            times = _entry_times(rng, counts[index], days, latest)
            records, sales, card = _card_history(rng, card_id, customer_id, operator.id,
                                                 counts[index], times, record_id)
            record_id += len(records)
            created = clock.as_text((times[0] if times else clock.now()) - datetime.timedelta(minutes=5))
            batch["customer"].append((
                customer_id, number, person["name"], person["gender"], person["phone"],
                person["address"], rng.choice(type_ids), person["remark"], False, created,
                created, clock.as_text(times[-1]) if times else None,
                Customer.make_search_text(person["name"], person["phone"], number)))
            number_of_card = generated_card_no(card_no + index)
            batch["gram"].extend((gram, customer_id) for gram in CustomerGram.grams(
                person["name"], person["phone"], number, number_of_card))
            batch["card"].append((card_id, number_of_card, customer_id, "active",
                                  card["money"], card["paid_money"], card["bonus_money"],
                                  card["entry_count"], card["chain_head"], "", created, stamp,
                                  ledger.owner_seal(card_id, number_of_card, customer_id, key)))
            for r in records:
                batch["record"].append((r["id"], r["card"], r["customer"], r["seq"],
                                        r["business_type"], r["amount"], r["paid_delta"],
                                        r["bonus_delta"], r["balance_after"], r["paid_after"],
                                        r["bonus_after"], r["payment_method"], r["reverses"],
                                        r["operator"], "", r["remark"], clock.as_text(r["created_at"]),
                                        r["prev_hash"], r["hash"]))
            batch["sale"].extend(sales)
            made += len(records)
            if len(batch["record"]) >= 20000 or len(batch["customer"]) >= 5000:
                yield batch, index + 1, made
                batch = {name: [] for name in TABLE_ORDER}
        yield batch, customers, made

    made = 0
    for batch, done, made in _ahead(batches()):
        with database.atomic():
            cursor = database.cursor()
            for name in TABLE_ORDER:
                if batch[name]:
                    insert(cursor, sql[name], batch[name])
        if progress and done < customers:
            progress(done, made)
    if is_mysql(database):
        for table in ("t_customer", "t_customer_gram", "t_card", "t_card_record",
                      "t_consume_record"):
            database.execute_sql(f"ANALYZE TABLE {table}")
    return made
