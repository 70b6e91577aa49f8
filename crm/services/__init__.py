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
