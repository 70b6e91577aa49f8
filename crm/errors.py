"""The one domain exception family: services raise these, web and API each map them once."""


class CrmError(Exception):
    """A refusal the user can act on: a Chinese message, an API error code and an HTTP status."""

    status = 400
    code = "bad_request"

    def __init__(self, message, code=None, status=None, field=None):
        super().__init__(message)
        self.message = message
        self.code = code or self.code
        self.status = status or self.status
        self.field = field  # the form field at fault, when there is one


class ValidationError(CrmError):
    """A value that is not acceptable (422)."""

    status = 422
    code = "invalid"


class NotFound(CrmError):
    """No such object (404)."""

    status = 404
    code = "not_found"


class Conflict(CrmError):
    """A valid request that the current state refuses (409)."""

    status = 409
    code = "conflict"


class AuthError(CrmError):
    """Not logged in, or the login failed (401)."""

    status = 401
    code = "unauthorized"


class Forbidden(CrmError):
    """Logged in, but the role does not allow it (403)."""

    status = 403
    code = "forbidden"


class Unavailable(CrmError):
    """Refused for a short while, to be tried again (503 with Retry-After)."""

    status = 503
    code = "unavailable"
    retry_after = 5  # seconds
