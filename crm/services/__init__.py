"""Business rules. No Flask here: services take ids, fen and an Actor, and raise CrmError."""
from dataclasses import dataclass


@dataclass(frozen=True)
class Actor:
    """Who is acting and from where: what every audited change records."""

    user: object = None  # crm.models.User, or None for the system itself
    ip: str = ""
    name: str = ""  # who it was when there is no user (the name typed at a failed login)

    @property
    def username(self):
        """The acting user's name, the name given, or "system"."""
        if self.user is not None:
            return self.user.username
        return self.name or "system"


SYSTEM = Actor()


MAX_PAGE = 1_000_000  # a page number beyond this is read as this (an offset past BIGINT: a 500)


def page_number(page):
    """A page number kept within 1..MAX_PAGE."""
    return min(max(1, page or 1), MAX_PAGE)


def page_window(page, pages, around=2):
    """The page numbers a pager shows: the first, the last, and those within `around` of this
    one, with None where numbers are left out (drawn as …)."""
    shown = sorted({1, pages, *range(max(1, page - around), min(pages, page + around) + 1)})
    out = []
    for number in shown:
        if out and number - out[-1] > 1:
            out.append(None)
        out.append(number)
    return out


def paging(count, page, per_page):
    """(page, pages) for `count` rows, `per_page` to a page: the page asked for, kept within
    1..pages (a page past the end shows the last)."""
    pages = max(1, -(-count // per_page))
    return min(max(1, page), pages), pages
