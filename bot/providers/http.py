"""The HTTP policy every provider shares: timeouts, retries, and status → error mapping.

One long-lived `httpx.AsyncClient` per provider. Reads are retried on connection failures,
429 and 5xx; writes only when the request certainly did not reach the provider (connection
refused, connect timeout) or was refused unprocessed (429). A write whose fate is unclear is
never retried: it surfaces as a `ProviderUncertain` error.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import logging
import random
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Self
from urllib.parse import quote

import httpx
from pydantic import ValidationError

from bot.core.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderNotFound,
    ProviderRateLimited,
    ProviderRejected,
    ProviderServerError,
    ProviderTimeout,
    ProviderUncertain,
    ProviderUnreachable,
)
from bot.core.model import Action
from bot.core.redact import redact
from bot.core.steps import Steps
from bot.core.timing import Live
from bot.providers.transport import ProviderTransport, proxy_from_environment

log = logging.getLogger(__name__)

# A chat bot wants answers in seconds: a person is watching the release message.
DEFAULT_TIMEOUT = httpx.Timeout(20.0, connect=5.0)
# Promotions must never queue behind each other for a connection (httpx's default is 100).
# Idle connections are kept for 5 s (httpx's default) by aiohttp's pool (bot/providers/
# transport.py), which costs nothing per request however many it keeps.
DEFAULT_LIMITS = httpx.Limits(max_connections=1000)


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded attempts with jittered exponential backoff; `Retry-After` honoured up to a cap."""

    attempts: int = 3
    base_delay: float = 0.5
    max_delay: float = 8.0
    max_retry_after: float = 30.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before attempt `attempt + 1` (attempt counts from 1)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after)
        backoff = min(self.base_delay * 2 ** (attempt - 1), self.max_delay)
        return backoff * random.uniform(0.5, 1.0)


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Parse a `Retry-After` header: delay-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - (now or datetime.now(UTC))).total_seconds(), 0.0)


def unreadable(exc: Exception) -> str:
    """Why a provider's body could not be read, naming fields but never their values (a body
    may echo a credential): "data.id: Field required; ..." or the JSON error."""
    if isinstance(exc, ValidationError):
        errors = exc.errors(include_input=False, include_url=False, include_context=False)
        return "; ".join(
            f"{'.'.join(str(part) for part in e['loc']) or 'body'}: {e['msg']}" for e in errors[:3]
        )
    return type(exc).__name__ if isinstance(exc, KeyError | TypeError) else str(exc)


def segment(value: str) -> str:
    """One path segment, quoted so that `/`, `..` or `%2F` can never leave it."""
    return quote(value, safe="")


# What each status means, in words; a provider's own message is appended after a colon.
_STATUS_TEXT: Mapping[int, str] = {
    400: "{name} refused the request",
    401: "{name} rejected the bot's credentials ({credential})",
    403: "the bot's {name} credentials ({credential}) lack the `{scope}` scope",
    404: "{name} found nothing there",
    409: "{name} reported a conflict",
    422: "{name} rejected the request as invalid",
    429: "{name} is rate-limiting the bot; try again in a minute",
}

_ERROR_CLASS: Mapping[int, type[ProviderError]] = {
    401: ProviderAuthError,
    403: ProviderAuthError,
    404: ProviderNotFound,
    429: ProviderRateLimited,
}


class ProviderHTTP:
    """A provider's HTTP client with our retry and error policy applied once, here."""

    def __init__(
        self,
        name: str,
        base_url: str,
        *,
        credential: str,
        scope: str,
        error_detail: Callable[[httpx.Response], str | None],
        headers: Mapping[str, str] | None = None,
        auth: httpx.Auth | None = None,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.name = name
        self.credential = credential
        self.scope = scope
        self.error_detail = error_detail
        self.retry = retry or RetryPolicy()
        # What this client sends as credentials: never repeated in what it reports.
        self.secrets = [v for k, v in (headers or {}).items() if k.lower() == "authorization"]
        self.secrets += [v.split(" ", 1)[-1] for v in self.secrets]
        self.sleep = sleep
        self._closed = False
        self._client_options: dict[str, Any] = {
            "base_url": base_url.rstrip("/") + "/",
            "headers": {"Accept": "application/json", **(headers or {})},
            "auth": auth,
            "timeout": timeout,
            "limits": DEFAULT_LIMITS,
            "transport": transport,
            "follow_redirects": False,
        }

    @functools.cached_property
    def client(self) -> httpx.AsyncClient:
        """The client, made at its first use rather than at start-up: making one builds an
        SSL context from the CA bundle (50-90 ms), which the first answer to Slack need not
        wait for. It sends through aiohttp's pool (bot/providers/transport.py) unless a test
        gives a transport of its own; through the proxy the environment names, as httpx's own
        transport would be."""
        options = self._client_options
        if options["transport"] is None:
            proxy = proxy_from_environment(httpx.URL(options["base_url"]))
            options = {**options, "transport": ProviderTransport(DEFAULT_LIMITS, proxy)}
        return httpx.AsyncClient(**options)

    async def aclose(self) -> None:
        self._closed = True  # a call after this is refused, not given a client of its own
        if "client" in vars(self):  # never used: nothing was opened
            await self.client.aclose()

    async def call(
        self,
        method: str,
        path: str,
        *,
        idempotent: bool,
        json: Any = None,
        params: Mapping[str, str] | None = None,
        explain: Mapping[int, str] | None = None,
    ) -> httpx.Response:
        """Send one request under the policy; return a 2xx/3xx response or raise ProviderError.

        `explain` gives this call's own words for a status ("no active bundle in staging").
        """
        if self._closed:
            raise ProviderUnreachable(self.name, f"not sent: the bot is stopping ({self.name})")
        try:
            client = self.client  # made at the first call
        except OSError as exc:  # no CA bundle where SSL_CERT_FILE says, or not a readable one
            raise ProviderUnreachable(
                self.name,
                f"{self.name} could not be reached: the bot could not set up HTTPS "
                f"({type(exc).__name__}: {exc}; check SSL_CERT_FILE)",
            ) from exc
        except ValueError as exc:  # a proxy it can't use (proxy_from_environment)
            raise ProviderUnreachable(
                self.name, f"{self.name} could not be reached: {exc}"
            ) from exc
        attempts = self.retry.attempts
        for attempt in range(1, attempts + 1):
            last = attempt == attempts
            try:
                response = await client.request(method, path.lstrip("/"), json=json, params=params)
            except (
                httpx.ConnectError,
                httpx.ConnectTimeout,
                httpx.PoolTimeout,
                httpx.ProxyError,
            ) as exc:
                if not last:
                    await self.sleep(self.retry.delay(attempt))
                    continue
                raise ProviderUnreachable(
                    self.name,
                    f"{self.name} could not be reached at {self.shown_url(path)} "
                    f"({_kind(exc, self.secrets)})",
                ) from exc
            except httpx.TimeoutException as exc:
                if idempotent and not last:
                    await self.sleep(self.retry.delay(attempt))
                    continue
                if isinstance(exc, httpx.WriteTimeout):
                    raise ProviderTimeout(
                        self.name,
                        f"{self.name} stopped reading the request before it answered "
                        f"({self.shown_url(path)})",
                    ) from exc
                seconds = self.client.timeout.read
                raise ProviderTimeout(
                    self.name,
                    f"{self.name} did not answer within {seconds:g} s ({self.shown_url(path)})",
                ) from exc
            except httpx.TransportError as exc:
                if idempotent and not last:
                    await self.sleep(self.retry.delay(attempt))
                    continue
                raise ProviderUncertain(
                    self.name,
                    f"the connection to {self.name} dropped before it answered "
                    f"({_kind(exc, self.secrets)})",
                ) from exc
            status = response.status_code
            if status < 400:
                return response
            retryable = status == 429 or (status >= 500 and idempotent)
            if retryable and not last:
                wait = retry_after_seconds(response.headers.get("Retry-After"))
                log.info(
                    "%s answered %s; retrying (attempt %s of %s)",
                    self.name,
                    status,
                    attempt + 1,
                    attempts,
                )
                await self.sleep(self.retry.delay(attempt, wait))
                continue
            raise self.error(response, explain or {})
        raise AssertionError("unreachable")  # pragma: no cover

    def shown_url(self, path: str) -> str:
        """The URL a call to `path` goes to, to name in an error: no user or password of the
        base URL, no query, nothing of the credentials."""
        url = self.client.base_url.join(path.lstrip("/"))
        return redact(f"{url.scheme}://{url.netloc.decode('ascii')}{url.path}", self.secrets)

    async def write(
        self,
        steps: Steps,
        step: str,
        method: str,
        path: str,
        *,
        json: Any = None,
        explain: Mapping[int, str] | None = None,
        find: Callable[[], Awaitable[Mapping[str, Any] | None]] | None = None,
    ) -> httpx.Response:
        """A write, as step `step` of the request's journal (bot/core/steps.py): marked before
        it is sent, sent once (never retried once it may have arrived), and its answer
        recorded; a step the journal shows answered is not sent again, its answer stands.

        `find` reads whether the write took effect, for a step marked sent whose answer was
        lost: what it found (`{"status", "body"}`, as an answer is kept), or None."""

        async def send() -> dict[str, Any]:
            response = await self.call(method, path, idempotent=False, json=json, explain=explain)
            return {"status": response.status_code, "body": response.text}

        answer = await steps.write(step, send, provider=self.name, find=find)
        return httpx.Response(
            int(answer["status"]),
            text=str(answer.get("body") or ""),
            headers={"Content-Type": "application/json"},
        )

    def error(self, response: httpx.Response, explain: Mapping[int, str]) -> ProviderError:
        """The one mapping from an HTTP error response to an exception with plain words."""
        status = response.status_code
        template = explain.get(status) or _STATUS_TEXT.get(status)
        if template is None:
            template = (
                "{name} had a server error" if status >= 500 else "{name} refused the request"
            )
        text = template.format(name=self.name, credential=self.credential, scope=self.scope)
        detail = _safe_detail(self.error_detail, response, self.secrets)
        message = f"{text} (HTTP {status}{': ' + detail if detail else ''})"
        if status >= 500:
            cls: type[ProviderError] = ProviderServerError
        else:
            cls = _ERROR_CLASS.get(status, ProviderRejected)
        return cls(self.name, message, status=status)


def _kind(exc: Exception, secrets: Iterable[str] = ()) -> str:
    text = redact(str(exc), secrets)
    return text[:120] if text else type(exc).__name__


def _safe_detail(
    extract: Callable[[httpx.Response], str | None],
    response: httpx.Response,
    secrets: Iterable[str] = (),
) -> str | None:
    try:
        detail = extract(response)
    except Exception:  # a provider's error body that does not follow its own docs
        detail = None
    if detail is None:
        return None
    # Some APIs echo the request's headers back: the credential must not travel on.
    detail = redact(" ".join(str(detail).split()), secrets)
    return detail[:300] + ("…" if len(detail) > 300 else "")


class HTTPProvider:
    """What every provider client shares: one `ProviderHTTP`, built once, closed once.

    Subclasses set `name` (the registry name), `label` (for people), `credential` (the
    setting's name, for error texts), `scope`, and `error_detail` (how to read error bodies).
    """

    name: str
    label: str
    credential: str
    scope: str

    def __init__(self, http: ProviderHTTP) -> None:
        self.http = http

    @staticmethod
    def error_detail(response: httpx.Response) -> str | None:
        raise NotImplementedError

    @classmethod
    def _http(
        cls,
        base_url: str,
        *,
        headers: Mapping[str, str] | None = None,
        auth: httpx.Auth | None = None,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
    ) -> ProviderHTTP:
        return ProviderHTTP(
            cls.label,
            base_url,
            credential=cls.credential,
            scope=cls.scope,
            error_detail=cls.error_detail,
            headers=headers,
            auth=auth,
            timeout=timeout,
            retry=retry,
        )

    async def stage_live(self, action: Action) -> Live | None:
        """What `action` promotes, as live in its source stage: providers without stages in
        order have no source stage."""
        return None

    async def aclose(self) -> None:
        await self.http.aclose()


class BearerProvider(HTTPProvider):
    """A provider with a static bearer credential."""

    @classmethod
    def create(
        cls,
        base_url: str,
        token: str,
        *,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
    ) -> Self:
        headers = {"Authorization": f"Bearer {token}"}
        return cls(cls._http(base_url, headers=headers, timeout=timeout, retry=retry))
