"""Domain errors; each carries a Chinese message a person can act on."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """Base class: `code` is stable for machines, `message` is for people (Chinese)."""

    code = "error"

    def __init__(self, message: str, *, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class NotFound(DomainError):
    """The object does not exist or is outside the caller's reach (the two look the same)."""

    code = "not_found"


class Forbidden(DomainError):
    """The caller may see the object but lacks the right for this action."""

    code = "forbidden"


class Conflict(DomainError):
    """A rule blocks the change (state, pending request, concurrent update)."""

    code = "conflict"


class RequirementsUnmet(Conflict):
    """The stage's requirements are not met; `details` lists every unmet reason."""

    code = "requirements_unmet"


class ConcurrentUpdate(Conflict):
    """Someone else changed the run first; reload and try again."""

    code = "concurrent_update"


class InvalidInput(DomainError):
    """Input failed validation; `details` names the fields or rows."""

    code = "invalid_input"


class Unauthenticated(DomainError):
    """No valid credentials (missing, wrong, expired or revoked token; wrong password)."""

    code = "unauthenticated"


class TooLarge(InvalidInput):
    """A file, or what it unpacks to, is over a size limit (answered 413)."""

    code = "too_large"


class RateLimited(DomainError):
    """Too many attempts; `retry_after` says how many seconds to wait."""

    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int, details: Any = None) -> None:
        super().__init__(message, details=details)
        self.retry_after = retry_after
