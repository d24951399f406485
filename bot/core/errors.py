"""Errors a provider call can end in, without any HTTP library in sight; and `UsageError`,
what input people typed wrong ends in.

`fate` is what the error means for a promotion: `failed` when the provider certainly did not
act (the request never left, or it was refused), `unknown` when it may have acted (a timeout
after sending, a dropped connection, a 5xx). A promotion whose fate is unknown is never retried.
"""

from __future__ import annotations

from bot.core.model import OutcomeState


class UsageError(Exception):
    """The input was wrong; `message` says what, `usage` shows the right form."""

    def __init__(self, message: str, usage: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.usage = usage


class ProviderError(Exception):
    fate: OutcomeState = "failed"

    def __init__(
        self, provider: str, message: str, *, status: int | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.provider = provider
        self.message = message
        self.status = status
        self.code = code


class ProviderUnreachable(ProviderError):
    """The request was never delivered (connection refused, DNS, connect timeout)."""


class ProviderRejected(ProviderError):
    """The provider answered 4xx: it understood and refused."""


class ProviderAuthError(ProviderRejected):
    """401/403: our credential was rejected or lacks the scope."""


class ProviderNotFound(ProviderRejected):
    """404."""


class ProviderRateLimited(ProviderRejected):
    """429, still refused after the retries the policy allows."""


class ProviderUncertain(ProviderError):
    """The request may have been acted on: timeout after sending, dropped connection, 5xx."""

    fate: OutcomeState = "unknown"


class ProviderServerError(ProviderUncertain):
    """5xx."""


class ProviderTimeout(ProviderUncertain):
    """No answer in time, after the request was sent."""
