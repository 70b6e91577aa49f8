"""The customer search index (t_customer_gram): every three-character piece of each customer's
lower-cased name, phone and number and of the numbers of their cards, plus single ideographs
and pairs of them, so that a search reads a few index entries instead of every customer. Derived
from t_customer and t_card, never backed up, brought in line by a restore (follow). Kept by
every writer of a name, phone, number or card in the same transaction, under the customer's row
lock (see crm.models.Customer.search_text)."""
from peewee import SQL, CharField, CompositeKey, IntegerField, fn

from crm.db import beside, executemany
from crm.models import BaseModel, Card, Customer


def _cjk(text):
    """True when every character is a CJK ideograph (one carries as much as three letters)."""
    return all("\u3400" <= ch <= "\u9fff" or "\uf900" <= ch <= "\ufaff" or ch >= "\U00020000"
               for ch in text)


class CustomerGram(BaseModel):
    """The search index: every three-character piece of each customer's (lower-cased) name,
    phone, number and card numbers, plus single ideographs and pairs of them. A stale piece only
    adds a candidate (the text is compared afterwards); a missing one would hide a customer, so
    every write of a name, phone, number or card indexes it."""

    gram = CharField(max_length=3)
    customer_id = IntegerField()  # no foreign key: bulk loads stay cheap, customers never go

    class Meta:
        table_name = "t_customer_gram"
        primary_key = CompositeKey("gram", "customer_id")

    @staticmethod
    def grams(*fields):
        """The pieces indexed for these field values."""
        found = set()
        for text in fields:
            text = (text or "").lower()
            found.update(text[i:i + 3] for i in range(len(text) - 2))
            if text.isascii():  # phones, numbers, Latin names: no ideographs
                continue
            ideograph = [_cjk(ch) for ch in text] + [False]
            for i, ch in enumerate(text):
                if ideograph[i]:
                    found.add(ch)
                    if ideograph[i + 1]:
                        found.add(text[i:i + 2])
        return found

    @staticmethod
    def pieces(q):
        """The indexed pieces any customer containing `q` holds (its last three trigrams: a
        phone's tail is its most telling part), or None when q is too short for the index."""
        if len(q) >= 3:
            return list(dict.fromkeys(q[i:i + 3] for i in range(len(q) - 3, -1, -1)))[:3]
        return [q] if _cjk(q) else None

    @classmethod
    def _each(cls, query, pairs):
        """Run `query` (one statement with a gram and a customer id) for every (gram, id) pair.
        The statement is built once and the pairs go through the driver's executemany: peewee's
        insert_many spent 11 of 17 s building the text for 10,000 customers."""
        executemany(cls._meta.database, query.sql()[0], pairs)

    @classmethod
    def _insert(cls, pairs):
        # Ignoring a piece already there: two edits of one customer at the same moment.
        cls._each(cls.insert(gram="", customer_id=0).on_conflict_ignore(), pairs)

    @classmethod
    def _delete(cls, pairs):
        cls._each(cls.delete().where((cls.gram == "") & (cls.customer_id == 0)), pairs)

    @classmethod
    def add(cls, rows):
        """Index customers or what they newly hold: rows of (id, text, ...), e.g. (id, name,
        phone, customer_no) or (id, card_no)."""
        cls._insert([(gram, row[0]) for row in rows for gram in cls.grams(*row[1:])])

    @staticmethod
    def card_numbers(customer_id):
        """The numbers of a customer's cards (closed ones too: a scanned old card still finds
        its holder), in the order _customers() gives them."""
        return tuple(no for (no,) in Card.select(Card.card_no)
                     .where(Card.customer == customer_id).order_by(Card.card_no).tuples())

    @classmethod
    def change(cls, customer_id, before, after, cards=()):
        """Re-index one customer whose (name, phone, customer_no) went from `before` to `after`;
        `cards`: the card numbers they hold, whose pieces stay (a phone used as a card number
        shares every piece with it)."""
        old, new = cls.grams(*before, *cards), cls.grams(*after, *cards)
        cls._delete([(gram, customer_id) for gram in sorted(old - new)])
        cls._insert([(gram, customer_id) for gram in sorted(new - old)])

    @classmethod
    def _customers(cls):
        """(id, name, phone, customer_no, *card numbers) of every customer, by id."""
        cards = (Card.select(Card.customer, Card.card_no).order_by(Card.customer, Card.card_no)
                 .tuples().iterator())
        customers = (Customer.select(Customer.id, Customer.name, Customer.phone,
                                     Customer.customer_no).order_by(Customer.id).tuples().iterator())
        for row, held in beside(customers, cards):
            yield (*row, *(card_no for _, card_no in held))

    @classmethod
    def indexed(cls):
        """What the index was made from, {customer id: (name, phone, customer_no, *cards)}; None
        when it does not hold exactly as many pieces, and as many for each customer as a weighted sum
        tells, as those customers have (then follow() rebuilds). Pieces lost, or moved from one
        customer to another, are caught; stale pieces would only add candidates."""
        found, pieces, weight = {}, 0, 0
        for customer_id, *fields in cls._customers():
            found[customer_id] = tuple(fields)
            count = len(cls.grams(*fields))
            pieces += count
            weight += count * customer_id
        held = cls.select(fn.COUNT(SQL("*")), fn.COALESCE(fn.SUM(cls.customer_id), 0)).tuples()
        return found if tuple(map(int, held.get())) == (pieces, weight) else None

    @classmethod
    def follow(cls, before):
        """After the customers were replaced wholesale (a restore): re-index those whose name,
        phone, number or cards changed, drop the pieces of those gone, index the new ones; the rest stay
        (a restore mostly brings back the customers that are there: deleting and re-inserting
        1.8 million rows for 100,000 customers took longer than everything else). `before`:
        indexed() from before the change (it is used up); None rebuilds the whole index."""
        if before is None:
            cls.rebuild()
            return
        gone, changed = [], []
        for customer_id, *fields in cls._customers():
            was = before.pop(customer_id, None)
            if was != tuple(fields):
                gone.extend((gram, customer_id) for gram in cls.grams(*was or ()))
                changed.append((customer_id, *fields))
        for customer_id, was in before.items():
            gone.extend((gram, customer_id) for gram in cls.grams(*was))
        cls._delete(gone)
        cls.add(changed)

    @classmethod
    def rebuild(cls):
        """Index every customer afresh (after a restore or a bulk load of t_customer)."""
        cls.delete().execute()
        batch = []
        for row in cls._customers():
            batch.append(row)
            if len(batch) == 2000:
                cls.add(batch)
                batch = []
        cls.add(batch)
