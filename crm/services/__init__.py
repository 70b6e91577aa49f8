"""Business rules. No Flask here: services take ids, fen and an Actor, and raise CrmError."""
from dataclasses import dataclass


@dataclass(frozen=True)
class Actor:
    """Who is acting and from where: what every audited change records."""

    user: object = None  # crm.models.User, or None for the system itself
    ip: str = ""

    @property
    def username(self):
        """The acting user's name, or "system"."""
        return self.user.username if self.user is not None else "system"


SYSTEM = Actor()
