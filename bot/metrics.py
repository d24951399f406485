"""Prometheus metrics for `GET /metrics`, one registry per bot.

Each `Metrics` has its own `CollectorRegistry` (never prometheus-client's global one), so tests
that run several bots in one process don't collide. Counters and histograms of this process are
updated where things happen (a provider call, an ack, a Slack API error, a request event); the
gauges that describe the database (requests by state, messages waiting, requests executing) are
read from the store when Prometheus scrapes, so every replica reports the same truth.

What the releases add up to (promotions by outcome, rollbacks, lead time, approval wait and
time to restore) is derived from the database too, not counted by this process: right across
restarts and replicas (every replica reports the same values: aggregate them with `max`, not
`sum`). The database computes it in SQL, in a worker thread on a connection of its own, when a
scrape finds the last answer older than `FIGURES_SECONDS`; every scrape is served the last
answer meanwhile (the first, none), so a scrape stays cheap however big the history, and
answers while the database does not.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

import aiohttp
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString
from slack_bolt.async_app import AsyncApp
from slack_bolt.middleware.async_middleware import AsyncMiddleware
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from bot.core.drift import OUTCOMES as DRIFT_OUTCOMES
from bot.core.drift import DriftWatch
from bot.core.errors import ProviderError
from bot.core.figures import DeliveryTotals, Durations
from bot.core.model import Action, AuditEntry, Drift, Outcome, Preview, State
from bot.core.ports import Provider
from bot.core.scheduler import Scheduler
from bot.core.stats import BOUNDS
from bot.core.steps import Steps
from bot.core.timing import Live
from bot.webhooks import OUTCOMES as WEBHOOK_OUTCOMES

log = logging.getLogger(__name__)

PREFIX = "promote_bot_"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# An ack is a few milliseconds; Slack gives up after 3 s.
ACK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0)
# A provider call is a read or a write over the internet, 20 s at most (then a retry).
PROVIDER_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0)
FIGURES_SECONDS = 30.0  # the database's figures are computed again at most this often


class CountingStore(Protocol):
    """What the scrape-time gauges read from the store."""

    def state_counts(self) -> Mapping[str, int]: ...

    def inbox_undone(self) -> int: ...

    def messages_due(self, now: datetime) -> list[int]: ...

    def executing_by(self, owner: str) -> int: ...

    def notice_counts(self) -> Mapping[str, int]: ...

    def event_counts(self) -> Mapping[tuple[str, str], int]: ...

    def delivery_totals(self, bounds: tuple[float, ...]) -> DeliveryTotals: ...


def messages_waiting(store: CountingStore) -> int:
    """Slack messages not delivered yet: release messages (or outcome replies) that lag behind
    the store, and acknowledged commands and clicks whose messages are still to come."""
    return len(store.messages_due(datetime.max.replace(tzinfo=UTC))) + store.inbox_undone()


class Metrics:
    """The bot's metrics, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.commands = Counter(
            PREFIX + "commands",
            "Slash commands by outcome at the ack: accepted (work follows), answered (help, a "
            "usage error, a refusal or a store failure, in the ack), error.",
            ["outcome"],
            registry=r,
        )
        self.request_events = Counter(
            PREFIX + "request_events",
            "Request events recorded in the audit log (requested, approved, rejected, "
            "executing, succeeded, failed, unknown, expired, cancelled, refused, …).",
            ["event"],
            registry=r,
        )
        self.provider_calls = Counter(
            PREFIX + "provider_calls",
            "Provider calls by provider, operation (preview, execute, observe) and outcome.",
            ["provider", "operation", "outcome"],
            registry=r,
        )
        self.provider_seconds = Histogram(
            PREFIX + "provider_call_seconds",
            "How long provider calls took, retries included.",
            ["provider", "operation"],
            buckets=PROVIDER_BUCKETS,
            registry=r,
        )
        self.ack_seconds = Histogram(
            PREFIX + "ack_seconds",
            "From a Slack payload reaching the app to its acknowledgement.",
            ["kind"],
            buckets=ACK_BUCKETS,
            registry=r,
        )
        self.slack_api_errors = Counter(
            PREFIX + "slack_api_errors",
            "Slack Web API calls that failed, by method (an error answer, or no answer).",
            ["method"],
            registry=r,
        )
        self.webhooks = Counter(
            PREFIX + "webhook_deliveries",
            "Znyx webhook deliveries by outcome: accepted (recorded, then read), bad_signature, "
            "duplicate (a body seen before), ignored (not a bundle event), too_large, malformed, "
            "unavailable (the store failed: Znyx sends it again).",
            ["outcome"],
            registry=r,
        )
        for outcome in WEBHOOK_OUTCOMES:  # every series from the start, at 0
            self.webhooks.labels(outcome=outcome)
        self._stores: list[tuple[CountingStore, str]] = []
        r.register(_StoreGauges(self._stores))
        self._schedulers: list[Scheduler] = []
        r.register(_JobMetrics(self._schedulers))
        self._drift: list[tuple[DriftWatch, tuple[str, ...]]] = []
        r.register(_DriftMetrics(self._drift))
        self._figures = _Figures()
        r.register(self._figures)
        self._computing: asyncio.Future[None] | None = None

    def watch_store(self, store: CountingStore, owner: str) -> None:
        """Report requests by state, messages waiting and requests executing (by `owner`,
        this process) from `store`, read at each scrape."""
        self._stores.append((store, owner))

    def watch_jobs(self, scheduler: Scheduler) -> None:
        """Report each timed job's runs, failures, time spent and last success."""
        self._schedulers.append(scheduler)

    def watch_drift(self, drift: DriftWatch, providers: Iterable[str]) -> None:
        """Report the background reads of previews by provider and outcome, and which
        providers are paused (they answered 429 or 5xx)."""
        self._drift.append((drift, tuple(providers)))

    def count_webhook(self, outcome: str) -> None:
        """A Znyx webhook delivery was answered (`outcome` is one of bot.webhooks.OUTCOMES)."""
        self.webhooks.labels(outcome=outcome).inc()

    def render(self) -> bytes:
        """The Prometheus text format (the database's figures as last computed)."""
        return generate_latest(self.registry)

    async def scrape(self, clock: Callable[[], float] = time.monotonic) -> bytes:
        """The Prometheus text format; the database's figures older than FIGURES_SECONDS are
        computed again meanwhile (this scrape shows the last ones)."""
        await self.refresh(clock)
        return self.render()

    async def refresh(
        self, clock: Callable[[], float] = time.monotonic, wait: bool = False
    ) -> None:
        """Have the database compute its figures again (in a worker thread), unless it did a
        moment ago or is at it: one computation at a time, however many scrapes come. A
        scrape never waits for it (a database that stops answering must not hold /metrics
        up): until the first answer the figures are not in the page. `wait`: until it is
        done. A store that fails keeps the last figures (counters never go back to nothing)
        and is asked again FIGURES_SECONDS later."""
        if not self._stores:
            return
        figures = self._figures
        stale = figures.at is None or clock() - figures.at >= FIGURES_SECONDS
        if stale and (self._computing is None or self._computing.done()):
            self._computing = asyncio.ensure_future(self._compute(clock))
        if wait and self._computing is not None:
            await asyncio.shield(self._computing)

    async def _compute(self, clock: Callable[[], float]) -> None:
        store = self._stores[0][0]
        try:
            self._figures.totals = await asyncio.to_thread(store.delivery_totals, BOUNDS)
        except Exception as exc:  # a scrape must answer even when the disk is full
            log.warning("metrics: the store did not compute its figures: %s", exc)
        self._figures.at = clock()

    def on_audit(self, entry: AuditEntry) -> None:
        """A request event was recorded (the workflow's audit observers)."""
        self.request_events.labels(event=entry.event.split(":")[0]).inc()

    def measure(self, provider: Provider) -> Provider:
        return MeasuredProvider(provider, self)


class _StoreGauges:
    """Gauges read from the store at scrape time."""

    def __init__(self, stores: list[tuple[CountingStore, str]]) -> None:
        self.stores = stores

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        if not self.stores:
            return
        store, owner = self.stores[0]
        by_state = GaugeMetricFamily(
            PREFIX + "requests", "Requests in the database, by state.", labels=["state"]
        )
        waiting = GaugeMetricFamily(
            PREFIX + "messages_waiting", "Slack messages waiting to be delivered."
        )
        executing = GaugeMetricFamily(
            PREFIX + "requests_executing", "Requests this process is executing now."
        )
        notices = GaugeMetricFamily(
            PREFIX + "direct_messages",
            "Direct messages to people in the database: owed (not sent yet), sent, dropped.",
            labels=["state"],
        )
        events = GaugeMetricFamily(
            PREFIX + "events",
            "Outgoing events ([[notify]]) in the database, by receiver and state: owed (not "
            "taken yet), sent, dropped (sent and dropped ones are kept a week).",
            labels=["receiver", "state"],
        )
        up = GaugeMetricFamily(PREFIX + "store_up", "1 when the store answered this scrape.")
        try:
            counts = store.state_counts()
            for state in State:
                by_state.add_metric([state.value], counts.get(state.value, 0))
            waiting.add_metric([], messages_waiting(store))
            executing.add_metric([], store.executing_by(owner))
            told = store.notice_counts()
            for state in ("owed", "sent", "dropped"):
                notices.add_metric([state], told.get(state, 0))
            for (receiver, state), n in sorted(store.event_counts().items()):
                events.add_metric([receiver, state], n)
        except Exception as exc:  # a scrape must answer even when the disk is full
            log.warning("metrics: the store did not answer: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield from (by_state, waiting, executing, notices, events, up)


class _Figures:
    """What the releases add up to, from the database, as last computed (`Metrics.refresh`)."""

    def __init__(self) -> None:
        self.totals: DeliveryTotals | None = None
        self.at: float | None = None  # monotonic time of the last computation

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        totals = self.totals
        if totals is None:
            return
        promotions = CounterMetricFamily(
            PREFIX + "promotions",
            "Promotions (requests that are not rollbacks) that ended, since the database "
            "began, by target, provider and outcome (succeeded, failed, unknown, rejected, "
            "cancelled, expired).",
            labels=["target", "provider", "outcome"],
        )
        for (target, state), n in sorted(totals.outcomes.items()):
            promotions.add_metric([target, provider_of(target), state], n)
        rollbacks = CounterMetricFamily(
            PREFIX + "rollbacks",
            "Rollbacks that succeeded, since the database began, by provider.",
            labels=["provider"],
        )
        for provider, n in sorted(_per_provider_counts(totals.rollbacks).items()):
            rollbacks.add_metric([provider], n)
        outside = CounterMetricFamily(
            PREFIX + "outside_changes",
            "Changes a provider showed that did not go through the bot, since the database "
            "began, by target and provider.",
            labels=["target", "provider"],
        )
        for target, n in sorted(totals.outside.items()):
            outside.add_metric([target, provider_of(target)], n)
        moved = CounterMetricFamily(
            PREFIX + "previews_moved",
            "Requests whose preview no longer held before they were decided (drift), since "
            "the database began, by provider.",
            labels=["provider"],
        )
        for provider, n in sorted(_per_provider_counts(totals.drifted).items()):
            moved.add_metric([provider], n)
        yield from (promotions, rollbacks, outside, moved)
        for name, help_text, measured in (
            ("lead_time_seconds", "From request to success, of succeeded promotions.", totals.lead),
            (
                "approval_wait_seconds",
                "From request to first approval, of approved promotions.",
                totals.wait,
            ),
            (
                "time_to_restore_seconds",
                "From a promotion's success to its rollback's success.",
                totals.restore,
            ),
        ):
            family = HistogramMetricFamily(PREFIX + name, help_text, labels=["provider"])
            for provider, d in sorted(_per_provider_durations(measured).items()):
                buckets = [(floatToGoString(b), n) for b, n in zip(BOUNDS, d.at_most, strict=True)]
                buckets.append(("+Inf", d.count))
                family.add_metric([provider], buckets, sum_value=d.total)
            yield family


def provider_of(target: str) -> str:
    """The provider a target belongs to: its first part (`znyx:guardrails:prod` → znyx)."""
    return target.split(":", 1)[0]


def _per_provider_counts(by_target: Mapping[str, int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for target, n in by_target.items():
        out[provider_of(target)] = out.get(provider_of(target), 0) + n
    return out


def _per_provider_durations(by_target: Mapping[str, Durations]) -> dict[str, Durations]:
    out: dict[str, Durations] = {}
    for target, d in by_target.items():
        had = out.get(provider_of(target))
        out[provider_of(target)] = (
            d
            if had is None
            else Durations(
                tuple(a + b for a, b in zip(had.at_most, d.at_most, strict=True)),
                had.count + d.count,
                had.total + d.total,
            )
        )
    return out


class _JobMetrics:
    """The scheduler's jobs, read at scrape time: one series per named job (a fixed set)."""

    def __init__(self, schedulers: list[Scheduler]) -> None:
        self.schedulers = schedulers

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        runs = CounterMetricFamily(
            PREFIX + "job_runs", "Runs of each timed job, by outcome.", labels=["job", "outcome"]
        )
        seconds = CounterMetricFamily(
            PREFIX + "job_seconds", "Time spent in each timed job.", labels=["job"]
        )
        last = GaugeMetricFamily(
            PREFIX + "job_last_success_timestamp_seconds",
            "When each timed job last ended well (Unix time; 0: not yet).",
            labels=["job"],
        )
        running = GaugeMetricFamily(
            PREFIX + "job_running", "1 while a timed job is running.", labels=["job"]
        )
        for scheduler in self.schedulers:
            for name, stats in scheduler.stats.items():
                failed = stats.failures
                runs.add_metric([name, "ok"], stats.runs - failed)
                runs.add_metric([name, "failed"], failed - stats.timeouts)
                runs.add_metric([name, "timeout"], stats.timeouts)
                seconds.add_metric([name], stats.seconds)
                last.add_metric([name], stats.last_success or 0.0)
                running.add_metric([name], 1.0 if stats.running else 0.0)
        yield from (runs, seconds, last, running)


class _DriftMetrics:
    """The drift job's reads, read at scrape time: one series per configured provider and
    outcome (fixed sets)."""

    def __init__(self, watched: list[tuple[DriftWatch, tuple[str, ...]]]) -> None:
        self.watched = watched

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        reads = CounterMetricFamily(
            PREFIX + "drift_reads",
            "Previews of open requests read again (drift), by provider and outcome: holds "
            "(nothing moved), moved (the message now says so), failed.",
            labels=["provider", "outcome"],
        )
        paused = GaugeMetricFamily(
            PREFIX + "drift_paused",
            "1 while previews of a provider's requests are not read (it answered 429 or 5xx).",
            labels=["provider"],
        )
        now = datetime.now(UTC)
        for drift, providers in self.watched:
            for provider in providers:
                for outcome in DRIFT_OUTCOMES:
                    reads.add_metric([provider, outcome], drift.reads[(provider, outcome)])
                until = drift.paused.get(provider)
                paused.add_metric([provider], 1.0 if until is not None and until > now else 0.0)
        yield from (reads, paused)


class MeasuredProvider:
    """A provider whose calls are counted and timed; everything else passes through."""

    def __init__(self, provider: Provider, metrics: Metrics) -> None:
        self.provider = provider
        self.name = provider.name
        self._metrics = metrics

    def __getattr__(self, name: str) -> Any:
        return getattr(self.provider, name)

    async def _timed(self, operation: str, call: Any, outcome_of: Callable[[Any], str]) -> Any:
        started = time.perf_counter()
        outcome = "error"
        try:
            result = await call
            outcome = outcome_of(result)
            return result
        except ProviderError as exc:
            outcome = "unknown" if exc.fate == "unknown" else "error"
            raise
        finally:
            m = self._metrics
            m.provider_seconds.labels(self.name, operation).observe(time.perf_counter() - started)
            m.provider_calls.labels(self.name, operation, outcome).inc()

    async def preview(self, action: Action) -> Preview:
        return await self._timed(
            "preview",
            self.provider.preview(action),
            lambda p: "refused" if p.refusal else "ok",
        )

    async def execute(
        self, action: Action, *, promoted_by: str, expect: Mapping[str, str], steps: Steps
    ) -> Outcome:
        return await self._timed(
            "execute",
            self.provider.execute(action, promoted_by=promoted_by, expect=expect, steps=steps),
            lambda o: o.state,
        )

    async def observe(
        self, action: Action, *, promoted_by: str, expect: Mapping[str, str], steps: Steps
    ) -> Outcome | None:
        return await self._timed(
            "observe",
            self.provider.observe(action, promoted_by=promoted_by, expect=expect, steps=steps),
            lambda o: "unclear" if o is None else o.state,
        )

    async def drift(self, action: Action, expect: Mapping[str, str]) -> Drift | None:
        return await self._timed(
            "drift",
            self.provider.drift(action, expect),
            lambda d: "moved" if d is not None else "holds",
        )

    async def stage_live(self, action: Action) -> Live | None:
        return await self._timed(
            "stage", self.provider.stage_live(action), lambda live: "ok" if live else "none"
        )

    async def aclose(self) -> None:
        await self.provider.aclose()


class MeasuredWebClient(AsyncWebClient):
    """slack-sdk's client, counting failed Web API calls by method."""

    def __init__(self, *args: Any, metrics: Metrics, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.metrics = metrics

    async def api_call(self, api_method: str, **kwargs: Any) -> AsyncSlackResponse:  # type: ignore[override]
        try:
            return await super().api_call(api_method, **kwargs)
        except (SlackApiError, aiohttp.ClientError, TimeoutError):
            self.metrics.slack_api_errors.labels(method=api_method).inc()
            raise


# `ack_seconds{kind}`: the payload types the bot answers, everything else signed as "other",
# and every request whose signature did not verify as "rejected" (nothing else about it is
# read): a fixed set, so no request can add a series.
ACK_KINDS = ("command", "block_actions", "view_submission", "event_callback", "other")
REJECTED = "rejected"
COMMAND_OUTCOMES = ("accepted", "answered", "error")
_VERIFIED = "promote_bot_verified"  # set in a request's context once Bolt let it through


def time_acks(app: AsyncApp, metrics: Metrics) -> None:
    """Time each payload from reaching the app to its ack, and count slash commands by the
    ack's outcome, in HTTP and Socket Mode alike: both adapters hand every payload to
    `app.async_dispatch` and send what it returns (with lazy listeners, right after the ack).
    A Bolt middleware can't do it alone: Bolt runs the listeners after the whole middleware
    chain. But one marks what it saw: global middleware added with `app.use` runs after Bolt's
    own, so only a request whose signature verified (or one from Socket Mode's websocket) is
    marked, and only a marked one is looked into; the rest count once, as `rejected`."""
    dispatch = app.async_dispatch
    for kind in (*ACK_KINDS, REJECTED):
        metrics.ack_seconds.labels(kind=kind)
    for outcome in COMMAND_OUTCOMES:
        metrics.commands.labels(outcome=outcome)

    app.use(_MarkVerified())

    @functools.wraps(dispatch)
    async def timed(req: AsyncBoltRequest) -> BoltResponse:
        started = time.perf_counter()
        response = await dispatch(req)
        elapsed = time.perf_counter() - started
        if not req.context.get(_VERIFIED):
            metrics.ack_seconds.labels(kind=REJECTED).observe(elapsed)
            return response
        kind = ack_kind(req.body)
        metrics.ack_seconds.labels(kind=kind).observe(elapsed)
        if kind == "command":
            status, answered = response.status, bool(response.body)
            outcome = "error" if status != 200 else "answered" if answered else "accepted"
            metrics.commands.labels(outcome=outcome).inc()
        return response

    app.async_dispatch = timed  # type: ignore[method-assign]


class _MarkVerified(AsyncMiddleware):
    """Marks each request it sees (Bolt runs it only after its own request verification).
    A middleware object of Bolt's own kind: no arguments to look up for each request."""

    async def async_process(
        self,
        *,
        req: AsyncBoltRequest,
        resp: BoltResponse,
        next: Callable[[], Awaitable[BoltResponse]],
    ) -> BoltResponse | None:
        req.context[_VERIFIED] = True
        return await next()


def ack_kind(body: object) -> str:
    """The `ack_seconds` label of a (verified) payload: one of `ACK_KINDS`."""
    if not isinstance(body, dict):
        return "other"
    if "command" in body:
        return "command"
    kind = body.get("type")
    return kind if kind in ACK_KINDS else "other"
