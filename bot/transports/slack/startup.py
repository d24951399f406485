"""Reaching Slack at start-up: the bot token (`auth.test`) and, in Socket Mode, the app token
(`apps.connections.open`).

Only Slack's own token errors (`invalid_auth`, `token_revoked`, …) blame a token. Anything else
that is not an answer (no connection, a timeout, HTTP 5xx, 429, Slack's `internal_error`) is
tried again with backoff by slack-sdk's own retry handlers, one log line per failed attempt:
for `auth.test` until a deadline, then one line saying what kept failing; for the Socket Mode
connection for as long as it takes, while `/readyz` says the bot is not connected.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

import aiohttp
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.http_retry.builtin_interval_calculators import BackoffRetryIntervalCalculator
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from bot.config import ConfigError

log = logging.getLogger("promote-bot.slack")

# What Slack says when a token itself is the problem (and nothing else may blame it).
TOKEN_ERRORS = frozenset(
    {
        "invalid_auth",
        "not_authed",
        "token_revoked",
        "token_expired",
        "account_inactive",
        "not_allowed_token_type",
        "no_permission",
        "org_login_required",
        "ekm_access_denied",
        "team_access_not_granted",
        "two_factor_setup_required",
        "enterprise_is_restricted",
        "invalid_token",
    }
)
# What Slack says when it is failing for now: worth asking again.
PASSING_ERRORS = frozenset(
    {
        "ratelimited",
        "accesslimited",
        "internal_error",
        "fatal_error",
        "service_unavailable",
        "request_timeout",
        "team_added_to_org",
    }
)
FIRST_BACKOFF_SECONDS = 0.5  # then doubled each time, up to
MAX_BACKOFF_SECONDS = 15.0
SOCKET_PING_SECONDS = 10.0  # slack-sdk's Socket Mode heartbeat (Bolt's default)
SOCKET_RETRIES = 40  # a few minutes of backoff a connection attempt; then slack-sdk's own loop


def slack_error(data: object) -> str | None:
    """Slack's `error` code from an answer (or its body); None when the body is not Slack's
    JSON (a text or HTML page from a proxy or a load balancer, or no body at all)."""
    if isinstance(data, AsyncSlackResponse):
        data = data.data
    elif isinstance(data, HttpResponse):
        data = data.body
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        return data["error"]
    return None


def _header(response: AsyncSlackResponse | HttpResponse, name: str) -> str:
    for key, value in (response.headers or {}).items():
        if key.lower() == name:
            return str(value[0] if isinstance(value, list) and value else value)
    return ""


def _body_kind(response: AsyncSlackResponse | HttpResponse) -> str:
    if isinstance(response, AsyncSlackResponse):
        data: object = response.data
    else:
        data = response.body if response.body is not None else response.data
    if error := slack_error(data):
        return f"error {error}"
    if isinstance(data, dict) and data:
        return "an answer without an error code"
    content_type = _header(response, "content-type")
    if "html" in content_type.lower():
        return "an HTML page, not Slack's JSON"
    if data:
        return "a text body, not Slack's JSON"
    return f"a {content_type} body, not Slack's JSON" if content_type else "no body"


Answer = AsyncSlackResponse | HttpResponse


def failure_text(response: Answer | None, error: Exception | None) -> str:
    """A failed call in a few words: "HTTP 502, an HTML page, not Slack's JSON",
    "ClientConnectorError: Cannot connect to host …", "no answer in time"."""
    if response is not None:
        retry_after = _header(response, "retry-after")
        after = f", Retry-After {retry_after} s" if retry_after else ""
        return f"HTTP {response.status_code}, {_body_kind(response)}{after}"
    if isinstance(error, TimeoutError):
        return "no answer in time"
    if error is not None:
        words = str(error).strip()
        return f"{type(error).__name__}: {words}" if words else type(error).__name__
    return "no answer"


class _CappedBackoff(BackoffRetryIntervalCalculator):
    """slack-sdk's exponential backoff with jitter, never longer than `cap` seconds."""

    def __init__(self, first: float, cap: float) -> None:
        super().__init__(backoff_factor=first)
        self.cap = cap

    def calculate_sleep_duration(self, current_attempt: int) -> float:
        return min(self.cap, super().calculate_sleep_duration(current_attempt))


class _SlackFailingRetryHandler(AsyncServerErrorRetryHandler):
    """slack-sdk's server-error handler (500 and 503), for every 5xx a proxy or load balancer
    may answer, and for Slack's own passing errors (`internal_error`, `service_unavailable`)."""

    async def _can_retry_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if response is None:
            return False
        return response.status_code >= 500 or slack_error(response) in PASSING_ERRORS


class Attempts:
    """The attempts at one Web API method: the deadline, and a log line for each failure.

    `deadline` (seconds from the first attempt, by `clock`) None: no deadline. `on_failure` is
    told each failure in words (start-up shows it on /readyz)."""

    def __init__(
        self,
        method: str,
        *,
        deadline: float | None = None,
        on_failure: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.method = method
        self.clock = clock
        self.started = clock()
        self.deadline = None if deadline is None else self.started + deadline
        self.on_failure = on_failure
        self.failures = 0
        self.last: str | None = None

    def open(self) -> bool:
        return self.deadline is None or self.clock() < self.deadline

    def failed(self, response: HttpResponse | None, error: Exception | None) -> None:
        self.failures += 1
        self.last = failure_text(response, error)
        if self.on_failure is not None:
            self.on_failure(f"{self.method} failed {self.failures}×, the last: {self.last}")
        left = ""
        if self.deadline is not None:
            left = f", for up to {math.ceil(max(0.0, self.deadline - self.clock()))} s more"
        log.warning(
            "Slack: %s failed (attempt %d: %s); trying again%s",
            self.method,
            self.failures,
            self.last,
            left,
        )

    def seconds(self) -> float:
        return self.clock() - self.started

    def handlers(self, retries: int) -> list[AsyncRetryHandler]:
        """slack-sdk's handlers for a Slack that can't be reached, is rate-limiting or is
        failing; each retry logged, none past the deadline."""
        backoff = _CappedBackoff(FIRST_BACKOFF_SECONDS, MAX_BACKOFF_SECONDS)
        return [
            _Counted(h, self)
            for h in (
                AsyncConnectionErrorRetryHandler(
                    max_retry_count=retries,
                    interval_calculator=backoff,
                    error_types=[aiohttp.ClientConnectionError, TimeoutError],
                ),
                AsyncRateLimitErrorRetryHandler(max_retry_count=retries),
                _SlackFailingRetryHandler(max_retry_count=retries, interval_calculator=backoff),
            )
        ]


class _Counted(AsyncRetryHandler):
    """One of slack-sdk's retry handlers, that stops at the deadline and logs each retry."""

    def __init__(self, inner: AsyncRetryHandler, attempts: Attempts) -> None:
        super().__init__(inner.max_retry_count, inner.interval_calculator)
        self.inner = inner
        self.attempts = attempts

    # Both take slack-sdk's keywords (state, request, response, error) and hand them on.
    async def _can_retry_async(self, **attempt: Any) -> bool:
        return self.attempts.open() and await self.inner.can_retry_async(**attempt)

    async def prepare_for_next_attempt_async(self, **attempt: Any) -> None:
        self.attempts.failed(attempt.get("response"), attempt.get("error"))
        await self.inner.prepare_for_next_attempt_async(**attempt)


async def identify(
    client: AsyncWebClient,
    *,
    wait: float = 0.0,
    on_failure: Callable[[str], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> AuthorizeResult:
    """Call `auth.test` at start-up: it checks the token, and Bolt then needs no Web API call
    before acking a request (by default it makes one on the first request).

    A Slack that can't be reached or is failing is asked again with backoff for `wait` seconds
    (each failure logged and told to `on_failure`); then, or when Slack rejects the token, a
    `ConfigError` of one line naming the setting to look at."""
    attempts = Attempts("auth.test", deadline=wait, on_failure=on_failure, clock=clock)
    checking = AsyncWebClient(  # the bot's client, with retries: auth.test changes nothing
        token=client.token,
        base_url=client.base_url,
        timeout=client.timeout,
        session=client.session,
        retry_handlers=attempts.handlers(retries=100 if wait > 0 else 0),
    )
    url = client.base_url
    try:
        response = await checking.auth_test()
    except SlackApiError as exc:
        error = slack_error(exc.response)
        if error in TOKEN_ERRORS:
            raise ConfigError(f"SLACK_BOT_TOKEN: Slack rejected it ({error})") from None
        status = exc.response.status_code
        said = failure_text(exc.response, None)
        if status >= 500 or status == 429 or error in PASSING_ERRORS:
            raise ConfigError(
                f"SLACK_API_URL: Slack kept failing at {url} ({_took(attempts)}{said}); the "
                "token was not checked: try again later (https://slack-status.com)"
            ) from None
        raise ConfigError(
            f"SLACK_API_URL: {url} answered auth.test with {said}: is it Slack's Web API "
            "(https://slack.com/api/)?"
        ) from None
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise ConfigError(
            f"SLACK_API_URL: Slack could not be reached at {url} "
            f"({_took(attempts)}{failure_text(None, exc)})"
        ) from None
    except AttributeError:  # slack-sdk reading a 200 text body as if it were Slack's JSON
        raise ConfigError(
            f"SLACK_API_URL: {url} answered auth.test with a text body, not Slack's JSON: is it "
            "Slack's Web API (https://slack.com/api/)?"
        ) from None
    identity = AuthorizeResult.from_auth_test_response(
        auth_test_response=response, bot_token=client.token
    )
    identity["app_id"] = response.get("app_id")  # clicks must come from this app
    return identity


def _took(attempts: Attempts) -> str:
    """ "4 attempts in 5 s, the last: " (nothing after one attempt)."""
    if not attempts.failures:
        return ""
    return f"{attempts.failures + 1} attempts in {attempts.seconds():.0f} s, the last: "


class _OneLine(logging.Filter):
    """slack-sdk's Socket Mode client logs a traceback each time it fails to connect (every
    10 s while it tries): keep what failed, on one line, and drop the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = " ".join(record.getMessage().split())
        record.args = None
        record.exc_info = None
        record.exc_text = None
        return True


SOCKET_LOG = logging.getLogger("promote-bot.socket-mode")
SOCKET_LOG.addFilter(_OneLine())


class _AppTokenCheckedClient(SocketModeClient):
    """slack-sdk's Socket Mode client, telling `rejected` when Slack refuses the app token
    instead of asking again every 10 s for ever. A Slack that can't be reached, is failing or
    rate-limiting is asked again by the web client's retry handlers (then, by slack-sdk's loop)."""

    rejected: Callable[[str], None]

    async def issue_new_wss_url(self) -> str:
        try:
            response = await self.web_client.apps_connections_open(app_token=self.app_token)
        except SlackApiError as exc:
            error = slack_error(exc.response)
            if error in TOKEN_ERRORS:
                self.closed = True  # slack-sdk's connect loops end here, quietly
                self.rejected(error or "")
            raise
        return response["url"]


class SocketMode(AsyncSocketModeHandler):
    """Bolt's Socket Mode handler, with a client whose `apps.connections.open` retries a Slack
    that can't be reached or is failing (with backoff, one log line each) and that tells
    `rejected` once when Slack refuses the app token, at start-up or on a reconnection."""

    def __init__(
        self,
        app: AsyncApp,
        app_token: str,
        *,
        api_url: str,
        session: aiohttp.ClientSession,
        rejected: Callable[[str], None],
    ) -> None:
        # Bolt's own __init__ makes a SocketModeClient of its own; this is it, with ours.
        self.app = app
        self.app_token = app_token
        web_client = AsyncWebClient(
            base_url=api_url,
            session=session,
            retry_handlers=Attempts("apps.connections.open").handlers(retries=SOCKET_RETRIES),
        )
        self.client = _AppTokenCheckedClient(
            app_token=app_token,
            logger=SOCKET_LOG,
            web_client=web_client,
            ping_interval=SOCKET_PING_SECONDS,
        )
        self.client.rejected = rejected
        self.client.socket_mode_request_listeners.append(self.handle)  # type: ignore[arg-type]


def app_token_rejected(error: str) -> ConfigError:
    return ConfigError(
        f"SLACK_APP_TOKEN: Slack rejected it ({error}): make a new app-level token with "
        "connections:write (Basic Information → App-Level Tokens), or unset SLACK_APP_TOKEN "
        "and set SLACK_SIGNING_SECRET for HTTP mode"
    )
