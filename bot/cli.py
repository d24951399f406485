"""`promote-bot`: the entry point, and the one place that wires everything together."""

from __future__ import annotations

import gc

# Importing what the bot runs makes some 70,000 objects that live as long as the process. The
# cyclic garbage collector would go through them ~170 times meanwhile, and again and again
# afterwards, to free almost nothing (~70 ms of start-up, a tenth of the imports). So it is paused
# for these imports, what they made is moved out of its sight (gc.freeze), and it runs on.
_collecting = gc.isenabled()
gc.disable()

import argparse
import asyncio
import logging
import os
import secrets
import signal
import sys
import tempfile
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, TypeVar
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from pydantic_settings import BaseSettings
from slack_bolt.async_app import AsyncApp
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from bot import __version__, logs
from bot.config import (
    ConfigError,
    Settings,
    load_config,
    load_settings,
    load_settings_all,
    parse_config,
    read_toml,
)
from bot.core.cdevents import MILESTONES
from bot.core.policy import Policy, describe, format_duration, pattern_for, policy_for
from bot.core.ports import Provider, StoreError
from bot.core.rules import Rules
from bot.core.scheduler import Scheduler
from bot.core.workflow import Workflow, utc_now
from bot.health import PATHS as HEALTH_PATHS
from bot.health import Health
from bot.live import LiveRules, ask_groups
from bot.metrics import MeasuredWebClient, Metrics, time_acks
from bot.providers.registry import PROVIDERS
from bot.providers.spec import SettingError
from bot.store import AnyStore, open_any
from bot.transports.events import HttpEventSender
from bot.transports.slack.app import SlackEndpoint, create_app
from bot.transports.slack.app import web_app as slack_web_app
from bot.transports.slack.chat import SlackChat
from bot.transports.slack.groups import SlackGroups
from bot.transports.slack.inbox import Inbox
from bot.transports.slack.startup import SOCKET_LOG, SocketMode, app_token_rejected, identify
from bot.transports.slack.workers import WorkPool
from bot.web import LISTENING, WebServer
from bot.webhooks import PATH as WEBHOOK_PATH
from bot.webhooks import ZnyxWebhooks

if TYPE_CHECKING:
    from bot.transports.shell import Shell

gc.freeze()
if _collecting:
    gc.enable()

log = logging.getLogger("promote-bot")
T = TypeVar("T")

SLACK_PATH = "/slack/events"
SLACK_TIMEOUT_SECONDS = 10
SLACK_CONNECTIONS = 200
GROUPS_AT_START_SECONDS = 3.0  # how long start-up waits for the user groups' members


async def build_providers(
    rules: Rules, overrides: Mapping[str, Any] | None = None
) -> dict[str, Provider]:
    """One client per provider the config uses, from its settings (environment variables,
    `overrides` by field name winning); a missing or bad setting is a `ConfigError`."""
    providers: dict[str, Provider] = {}
    problems: list[str] = []
    for name in rules.providers:  # every provider's problems, not only the first one's
        try:
            providers[name] = PROVIDERS[name].build(overrides)
        except SettingError as exc:
            problems += exc.problems
    if problems:
        for provider in providers.values():
            await provider.aclose()
        raise ConfigError("\n".join(problems))
    return providers


@dataclass
class Checked:
    """What start-up checked before asking Slack anything: the settings, the config file, the
    providers' settings (their clients built) and the database (open)."""

    settings: Settings
    rules: Rules
    providers: dict[str, Provider]
    store: AnyStore
    metrics: Metrics = field(default_factory=Metrics)
    webhooks: ZnyxWebhooks | None = None  # POST /webhooks/znyx, when ZNYX_WEBHOOK_SECRET is set

    async def aclose(self) -> None:
        for provider in self.providers.values():
            await provider.aclose()
        self.store.close()


@dataclass
class SlackBot:
    """Everything `serve` runs, built from the settings and the config file."""

    settings: Settings
    store: AnyStore
    providers: dict[str, Provider]
    workflow: Workflow
    app: AsyncApp
    live: LiveRules

    session: aiohttp.ClientSession
    inbox: Inbox
    pool: WorkPool
    metrics: Metrics = field(default_factory=Metrics)
    webhooks: ZnyxWebhooks | None = None  # POST /webhooks/znyx, when ZNYX_WEBHOOK_SECRET is set
    events: HttpEventSender = field(default_factory=HttpEventSender)  # to [[notify]]

    def web_routes(self, app: web.Application) -> web.Application:
        """Add what `serve` answers on PORT besides Slack and the health endpoints."""
        if self.webhooks is not None:
            self.webhooks.add_routes(app)
        return app

    async def aclose(self) -> None:
        for provider in self.providers.values():
            await provider.aclose()
        await self.events.aclose()
        await self.session.close()
        self.store.close()


def _slack_mode_problems(settings: Settings, said: set[str]) -> list[str]:
    """What is missing for the Slack mode the settings select, said once, coherently: HTTP mode
    needs the signing secret; SLACK_APP_TOKEN selects Socket Mode instead (and one that is
    malformed is its own problem, not a reason to ask for the signing secret)."""
    if settings.slack_bot_token is None and "SLACK_BOT_TOKEN" not in said:
        return [
            "SLACK_BOT_TOKEN is not set, so there is no Slack to serve (and SLACK_APP_TOKEN "
            "for Socket Mode, or SLACK_SIGNING_SECRET for HTTP). "
            "To try the bot without Slack: promote-bot shell --sandbox"
        ]
    if settings.socket_mode or "SLACK_APP_TOKEN" in said or settings.slack_signing_secret:
        return []
    return [
        "SLACK_SIGNING_SECRET is not set: HTTP mode needs it to verify Slack's requests "
        "(Basic Information → Signing Secret); or set SLACK_APP_TOKEN (xapp-…, with "
        "connections:write) to use Socket Mode instead, which needs no signing secret"
    ]


async def check_start(
    settings: Settings,
    provider_settings: Mapping[str, Any] | None = None,
    problems: Sequence[str] = (),
) -> Checked:
    """Check the settings, the config file, each configured provider's settings and the
    database, before asking Slack anything. Every problem found is reported at once, in one
    `ConfigError` (one line each, `problems` from the settings first)."""
    problems = list(problems)
    problems += _slack_mode_problems(settings, {line.split(":", 1)[0] for line in problems})
    rules: Rules | None = None
    try:
        rules = load_config(settings.promote_bot_config)
    except ConfigError as exc:
        problems.append(str(exc))
    providers: dict[str, Provider] = {}
    if rules is not None:
        try:
            providers = await build_providers(rules, provider_settings)
        except ConfigError as exc:
            problems += str(exc).splitlines()
    store: AnyStore | None = None
    try:
        store = open_store(settings.promote_bot_db)
    except ConfigError as exc:
        problems.append(str(exc))
    if problems:
        for provider in providers.values():
            await provider.aclose()
        if store is not None:
            store.close()
        raise ConfigError("\n".join(problems))
    assert rules is not None and store is not None
    checked = Checked(settings, rules, providers, store)
    checked.webhooks = znyx_webhooks(rules, store, provider_settings, checked.metrics.count_webhook)
    return checked


async def connect_slack(
    checked: Checked,
    clock: Callable[[], datetime] = utc_now,
    on_failure: Callable[[str], None] | None = None,
    slack_timeout: float = SLACK_TIMEOUT_SECONDS,
) -> SlackBot:
    """Check the bot token with Slack (`auth.test`, asked again while Slack can't be reached
    or fails, for PROMOTE_BOT_SLACK_WAIT_SECONDS, each failure told to `on_failure`) and build
    everything `serve` runs. `clock` is what the workflow reads the time from (tests move it
    across freeze windows); `slack_timeout` how long a Web API call may take (tests make
    Slack answer too late). On failure, `checked` is left for the caller to close."""
    settings, rules, store, metrics = (
        checked.settings,
        checked.rules,
        checked.store,
        checked.metrics,
    )
    assert settings.slack_bot_token is not None
    # One session for every Web API call (slack-sdk opens one per call without it).
    # slack-sdk applies its `timeout` only to sessions it makes itself: ours carries it.
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=SLACK_CONNECTIONS),
        timeout=aiohttp.ClientTimeout(total=slack_timeout),
    )
    client: AsyncWebClient = MeasuredWebClient(
        token=settings.slack_bot_token.get_secret_value(),
        base_url=str(settings.slack_api_url),
        timeout=slack_timeout,
        session=session,
        # A 429 was not acted on, so waiting out its Retry-After and sending again is safe.
        # No retry on a dropped connection: a post Slack made would be made twice; the
        # workflow finds such a post instead, and brings messages up to date itself.
        retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=1)],
        metrics=metrics,
    )
    # User groups are looked up by a client that never waits out a rate limit (a Retry-After
    # of 45 s would hold start-up or the groups job): the job asks again when Slack says.
    groups_client: AsyncWebClient = MeasuredWebClient(
        token=settings.slack_bot_token.get_secret_value(),
        base_url=str(settings.slack_api_url),
        timeout=slack_timeout,
        session=session,
        retry_handlers=[],
        metrics=metrics,
    )
    group_members = SlackGroups(groups_client).members
    # The user groups' members are asked for while auth.test is in flight (two round trips to
    # Slack at once, not one after the other); the answers are taken once the token is good.
    asking = asyncio.create_task(ask_groups(group_members, rules.role_map.groups))
    try:
        identity = await identify(  # raises ConfigError naming the setting
            client, wait=settings.promote_bot_slack_wait_seconds, on_failure=on_failure
        )
    except BaseException:  # a rejected token, or stopped meanwhile: nothing left running
        asking.cancel()
        await asyncio.gather(asking, return_exceptions=True)
        await session.close()
        raise
    lease = timedelta(seconds=settings.promote_bot_lease_seconds)
    providers = checked.providers
    measured = {name: metrics.measure(provider) for name, provider in providers.items()}
    chat = SlackChat(client, identity.get("url"))
    events = HttpEventSender()
    workflow = Workflow(
        rules,
        store,
        measured,
        chat,
        clock=clock,
        lease=lease,
        inbox_retention=timedelta(seconds=settings.promote_bot_inbox_retention),
        drift_every=settings.promote_bot_drift_seconds,
        events=events,
        chat_timeout=timedelta(seconds=slack_timeout),
    )
    workflow.observers.append(metrics.on_audit)
    metrics.watch_store(store, workflow.owner)
    metrics.watch_drift(workflow.drift, providers)
    webhooks = checked.webhooks.attach(workflow) if checked.webhooks is not None else None
    live = LiveRules(
        workflow,
        settings.promote_bot_config,
        group_members,
        groups_every=settings.promote_bot_groups_refresh,
    )
    # A failure is logged; the groups' members get no roles yet. Waited for a moment at most:
    # serving (and /healthz for a liveness probe) never waits on Slack's user groups.
    await live.first_lookup(asking, GROUPS_AT_START_SECONDS)
    secret = settings.slack_signing_secret
    inbox = Inbox(workflow, identity, chat.tell, session)
    pool = WorkPool(inbox, settings.promote_bot_workers)
    app = create_app(
        workflow,
        identity=identity,
        api_url=str(settings.slack_api_url),
        signing_secret=None
        if settings.socket_mode or secret is None
        else secret.get_secret_value(),
        pool=pool,
    )
    time_acks(app, metrics)
    return SlackBot(
        settings,
        store,
        providers,
        workflow,
        app,
        live,
        session,
        inbox,
        pool,
        metrics,
        webhooks,
        events,
    )


def znyx_webhooks(
    rules: Rules,
    store: AnyStore,
    provider_settings: Mapping[str, Any] | None,
    count: Callable[[str], None] | None = None,
) -> ZnyxWebhooks | None:
    """The receiver of Znyx's webhooks, when ZNYX_WEBHOOK_SECRET is set and Znyx configured
    (it records deliveries from the start; `attach` it to the workflow to work on them)."""
    secret = PROVIDERS["znyx"].load_settings(provider_settings).znyx_webhook_secret
    if secret is None:
        return None
    if "znyx" not in rules.providers:
        log.warning("ZNYX_WEBHOOK_SECRET is set but the config has no [znyx]: no webhooks")
        return None
    return ZnyxWebhooks(store, secret.get_secret_value(), count=count)


async def start_slack_bot(
    settings: Settings,
    provider_settings: Mapping[str, Any] | None = None,
    problems: Sequence[str] = (),
    clock: Callable[[], datetime] = utc_now,
    slack_timeout: float = SLACK_TIMEOUT_SECONDS,
) -> SlackBot:
    """Check everything (`check_start`), then Slack (`connect_slack`); build what `serve` runs."""
    checked = await check_start(settings, provider_settings, problems)
    try:
        return await connect_slack(checked, clock, slack_timeout=slack_timeout)
    except BaseException:
        await checked.aclose()
        raise


def open_store(where: Path | str) -> AnyStore:
    """The database (a SQLite file, or PostgreSQL for a postgresql:// URI), proven writable;
    any problem is one line naming PROMOTE_BOT_DB."""
    try:
        return open_any(where)
    except StoreError as exc:
        raise ConfigError(str(exc)) from None


class _Stopped(Exception):
    """SIGINT or SIGTERM came (or a fatal problem) before what was awaited finished."""


class _Signals:
    """SIGINT and SIGTERM stop `serve` (from start-up on, also while it waits for Slack);
    SIGHUP reads the config file again once the bot runs. A problem found while running (Slack
    rejecting the app token) stops it too, and is raised once the work in flight is done."""

    def __init__(self) -> None:
        self.stop = asyncio.Event()
        self.failure: ConfigError | None = None
        self.hangup: Callable[[], None] = lambda: None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stop.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: self.hangup())

    def fail(self, problem: ConfigError) -> None:
        self.failure = self.failure or problem
        self.stop.set()

    async def unless_stopped(self, work: Awaitable[T]) -> T:
        """`work`'s result; `_Stopped` (with `work` cancelled) if stopped first."""
        task = asyncio.ensure_future(work)
        stopped = asyncio.ensure_future(self.stop.wait())
        try:
            await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
        if task.done():
            return task.result()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise _Stopped


SETTLE_SECONDS = 0.2
INBOX_SECONDS = 10.0  # how often acknowledged work a stopped process left is looked for


def scheduler_for(bot: SlackBot) -> Scheduler:
    """Every timed job `serve` runs: the core's (expiry, recovery, delivery, leases), the
    inbox's recovery, and keeping the config and the user groups current."""
    scheduler = Scheduler()
    bot.workflow.schedule(scheduler)

    async def inbox() -> None:
        await bot.inbox.recover(bot.pool.wake)

    scheduler.add("inbox", inbox, INBOX_SECONDS)
    if bot.webhooks is not None:
        bot.webhooks.schedule(scheduler)
    bot.live.schedule(scheduler)
    bot.metrics.watch_jobs(scheduler)
    return scheduler


def _refusing_while(stopping: asyncio.Event) -> Middleware:
    """While shutting down, new requests get 503 so Slack's next try reaches another replica."""

    @web.middleware
    async def refuse(request: web.Request, handler: Handler) -> web.StreamResponse:
        if stopping.is_set() and request.path not in HEALTH_PATHS:  # /readyz says 503 itself
            return web.Response(status=503, text="promote-bot is shutting down")
        return await handler(request)

    return refuse


async def _finish_in_flight(workflow: Workflow, within: float) -> None:
    """Let work already acknowledged finish (a promotion, its messages), up to `within` s."""
    await asyncio.sleep(SETTLE_SECONDS)  # work acked just now reaches `working()`
    if workflow.busy:
        log.info("stopping: letting %s piece(s) of work finish (up to %g s)", workflow.busy, within)
    if not await workflow.drain(within):
        log.warning(
            "stopping with %s piece(s) of work unfinished: another process or the next start "
            "resolves them by reading the providers",
            workflow.busy,
        )
        await workflow.abandon()


async def serve(settings: Settings, problems: Sequence[str] = ()) -> None:
    """Run the bot for Slack until SIGINT or SIGTERM. /healthz, /readyz and /metrics answer on
    PORT from before Slack is asked (/readyz: 503 until it answered); a problem with a setting,
    the config file, the database or a token is a `ConfigError`."""
    checked = await check_start(settings, problems=problems)
    signals = _Signals()
    health = Health(checked.store, checked.metrics)
    health.waiting_for("auth.test not answered yet")
    endpoint = SlackEndpoint(SLACK_PATH)
    if settings.socket_mode:  # no Bolt web server: the endpoints get a small app of their own
        application = health.app()
    else:
        application = slack_web_app(endpoint, SLACK_PATH)
        application.middlewares.append(_refusing_while(health.stopping))
        health.add_routes(application)
    if checked.webhooks is not None:  # recorded from the start, worked on once Slack answered
        checked.webhooks.add_routes(application)
    bot: SlackBot | None = None
    scheduler = Scheduler()
    try:
        async with WebServer(application, host="0.0.0.0", port=settings.port) as server:
            told = False

            def waiting(what: str) -> None:  # Slack failed: say where health answers, once
                nonlocal told
                if not told:
                    told = True
                    log.info(
                        "promote-bot %s: /healthz, /readyz and /metrics on port %s meanwhile "
                        "(/readyz: 503 until Slack answers)",
                        __version__,
                        server.port,
                    )
                health.waiting_for(what)

            try:
                bot = await signals.unless_stopped(connect_slack(checked, on_failure=waiting))
            except _Stopped:
                log.info("promote-bot stopped before Slack answered")
                return
            if settings.socket_mode:
                where = LISTENING.format(host="0.0.0.0", port=server.port, path="/healthz")
                log.info("promote-bot %s: health and metrics %s", __version__, where)
            health.waiting = None
            scheduler = scheduler_for(bot)
            scheduler.start()
            signals.hangup = bot.live.hangup
            if settings.socket_mode:
                await _in_socket_mode(bot, health, signals)
            else:
                endpoint.serve(bot.app)
                where = LISTENING.format(host="0.0.0.0", port=server.port, path=SLACK_PATH)
                log.info("promote-bot %s %s", __version__, where)
                await signals.stop.wait()
                health.stopping.set()
            await _finish_in_flight(bot.workflow, settings.promote_bot_shutdown_seconds)
        if signals.failure is not None:
            raise signals.failure
        log.info("promote-bot stopped")
    finally:
        await scheduler.stop()
        await (bot.aclose() if bot is not None else checked.aclose())


async def _in_socket_mode(bot: SlackBot, health: Health, signals: _Signals) -> None:
    """Connect to Slack in Socket Mode (while Slack can't be reached, trying again, each
    failure logged; a rejected app token stops the bot) and serve until stopped."""
    assert bot.settings.slack_app_token is not None
    handler = SocketMode(
        bot.app,
        bot.settings.slack_app_token.get_secret_value(),
        api_url=str(bot.settings.slack_api_url),
        session=bot.session,
        rejected=lambda error: signals.fail(app_token_rejected(error)),
    )
    health.slack_connected = handler.client.is_connected
    try:
        await signals.unless_stopped(handler.connect_async())
        if not signals.stop.is_set():
            log.info("promote-bot %s connected to Slack in Socket Mode", __version__)
        await signals.stop.wait()
    except _Stopped:
        pass
    finally:
        health.stopping.set()
        await handler.close_async()  # Slack sends new work to the other connections


async def shell(settings: Settings, args: argparse.Namespace) -> int:
    """The bot in a terminal, against the configured providers or the sandbox; the exit
    status. On a terminal (stdin and stdout), with a line editor and rendered markup; else it
    reads lines from stdin and prints plain text."""
    from bot.sandbox import world as sandbox
    from bot.transports.shell import Shell, ShellChat

    editing = sys.stdin.isatty() and sys.stdout.isatty()
    if sys.stdout.isatty():
        from bot.transports.shell_prompt import terminal_writer

        write = terminal_writer()
    else:

        def write(text: str) -> None:
            print(text, flush=True)

    async with AsyncExitStack() as stack:
        fakes: sandbox.Sandbox | None = None
        if args.sandbox:
            fakes = await sandbox.start_world(stack)
            overrides: dict[str, Any] | None = fakes.settings
            own = read_toml(args.config, setting="--config: ") if args.config else None
            rules = parse_config(
                sandbox.rehearsal_config(own), source=str(args.config or "sandbox")
            )
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="promote-bot-")))
            db = workdir / "sandbox.db"
            user = args.as_user or sandbox.first_user(rules, own=own is not None)
            write(sandbox.banner(rules, user, str(args.config) if own is not None else None))
        else:
            if args.as_user is None:
                raise ConfigError("--as USER is required without --sandbox (a Slack user id)")
            rules = load_config(args.config or settings.promote_bot_config)
            db, user, overrides = settings.promote_bot_db, args.as_user, None
        providers = await build_providers(rules, overrides)
        store = open_store(db)
        stack.callback(store.close)
        for provider in providers.values():
            stack.push_async_callback(provider.aclose)
        chat = ShellChat(write)
        lease = timedelta(seconds=settings.promote_bot_lease_seconds)
        events = HttpEventSender()
        stack.push_async_callback(events.aclose)
        workflow = Workflow(
            rules,
            store,
            providers,
            chat,
            lease=lease,
            inbox_retention=timedelta(seconds=settings.promote_bot_inbox_retention),
            drift_every=settings.promote_bot_drift_seconds,
            events=events,
        )
        await workflow.recover()
        await workflow.sweep()
        scheduler = Scheduler()
        workflow.schedule(scheduler)
        extras = await _sandbox_webhooks(stack, fakes, workflow, scheduler) if fakes else {}
        async with scheduler:
            shell = Shell(workflow, user, write, may_switch_user=args.sandbox, extras=extras)
            if not editing:
                return await shell.run()
            known = sandbox.USERS if args.sandbox and args.config is None else {}
            return await _edit_lines(shell, known)
    return 0


async def _sandbox_webhooks(
    stack: AsyncExitStack, fakes: Any, workflow: Workflow, scheduler: Scheduler
) -> dict[str, Any]:
    """In the sandbox, Znyx's changes come as signed webhooks to a receiver of the shell's
    own (on a port the OS picks), and `znyx-ui` changes Znyx as someone using its UI would."""
    from bot.sandbox import world as sandbox
    from bot.transports.shell import Extra

    secret = secrets.token_hex(16)
    receiver = ZnyxWebhooks(workflow.store, secret).attach(workflow)
    receiver.schedule(scheduler)
    server = await stack.enter_async_context(WebServer(receiver.add_routes(web.Application())))
    fakes.znyx.webhooks.append((server.url + WEBHOOK_PATH, secret))

    async def ui(user: str, words: list[str]) -> str:
        said = sandbox.znyx_ui(fakes.znyx, user, words)
        await fakes.znyx.delivered()  # Znyx's webhook reached the receiver (and was recorded)
        await receiver.work()  # read now, so what it changed shows before the next prompt
        return said

    return {"znyx-ui": Extra(sandbox.ZNYX_UI_USAGE, ui)}


async def _edit_lines(shell: Shell, people: Mapping[str, str]) -> int:
    """The shell on a terminal: history in the user's state folder (no secrets written)."""
    from bot.transports.shell_prompt import Prompt, history_path, open_history

    redactor = logs.Redactor(logs.secret_values(_secret_models()))
    history, why = open_history(history_path(), redactor)
    shell.write(
        "Tab completes; ↑ and ↓ walk the history; Ctrl-C clears the line; Ctrl-D or `exit` leaves."
    )
    if why:
        shell.write(why)

    def everyone() -> list[str]:
        return list(dict.fromkeys([*people, *shell.workflow.rules.role_map.members]))

    return await Prompt(shell, history, people=everyone).run()


def _count(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else many or one + 's'}"


def _needs(approvals: int) -> str:
    return "runs without approval" if approvals == 0 else f"needs {_count(approvals, 'approval')}"


def policy_details(policy: Policy) -> str:
    """Everything a policy decides, for `check-config`: approvals and by whom, when a pending
    request expires, what a rollback and a --emergency request need."""
    rollback = policy.approvals if policy.rollback_approvals is None else policy.rollback_approvals
    parts = [describe(policy)]
    if policy.approvals:
        parts.append(f"expires after {format_duration(policy.expires_after)}")
    parts.append(f"a rollback {_needs(rollback)}")
    parts.append(f"--emergency {_needs(policy.for_emergency().approvals)}")
    return "; ".join(parts)


def config_summary(rules: Rules, source: str) -> str:
    """What `check-config` prints about a valid file: roles, members, groups, providers and the
    policy each target gets."""
    role_map = rules.role_map
    lines = [f"{source} is valid."]
    lines.append(f"Roles ({len(role_map.roles)}):")
    lines += [f"  {r}: {', '.join(sorted(s)) or 'no scopes'}" for r, s in role_map.roles.items()]
    lines.append(f"Members ({_count(len(role_map.members), 'person', 'people')}):")
    lines += [f"  {u}: {', '.join(r)}" for u, r in role_map.members.items()]
    lines.append(f"Groups ({_count(len(role_map.groups), 'Slack user group')}):")
    lines += [f"  {g}: {', '.join(r)}" for g, r in role_map.groups.items()]
    if role_map.groups:
        lines.append(
            "  Their members are not resolved here: `serve` looks them up in Slack "
            "(usergroups.users.list); the shell can't, so there they get no roles."
        )
    lines.append("Providers:")
    lines += [f"  {p.name}: {p.help_line() or p.label}" for p in rules.providers.values()]
    if rules.unconfigured:
        lines.append(f"  not configured: {', '.join(rules.unconfigured)}")
    lines.append("Policies per target:")
    targets = [t for p in rules.providers.values() for t in p.targets()]
    for target in targets:
        pattern = pattern_for(target, dict(rules.policies))
        source_of = f'[policies."{pattern}"]' if pattern else "the default"
        policy = policy_for(target, dict(rules.policies))
        details = "; ".join([policy_details(policy), *stage_details(rules, target, policy)])
        lines.append(f"  {target}: {details} ({source_of})")
    if not targets:
        lines.append("  no targets: no provider is configured")
    lines.append(f"Freezes ({len(rules.freezes)}):")
    lines += [f"  {', '.join(f.targets)}: {f.describe()}" for f in rules.freezes]
    lines.append(f"Allow windows ({len(rules.windows)}):")
    lines += [f"  {', '.join(w.targets)}: {w.describe()}" for w in rules.windows]
    lines.append(f"Receivers of events ({len(rules.notify)}):")
    for r in rules.notify:
        where = urlsplit(r.url)  # only its host: the rest of a URL may be a token
        events = ", ".join(e for e in MILESTONES if e in r.events)
        lines.append(
            f"  {r.name}: {where.scheme}://{where.netloc}/… ({events}; {', '.join(r.targets)})"
        )
    lines.append(
        f"Times are shown in {rules.timezone} (`timezone`), and `--at` is read there "
        "for people whose Slack time zone is unknown."
    )
    return "\n".join(lines)


def stage_details(rules: Rules, target: str, policy: Policy) -> list[str]:
    """What a target's stage gets, for `check-config`: its soak, whether it promotes itself
    and where, the allow windows it runs in."""
    parts = []
    stage = rules.stage_promotion(target)
    source = (stage.source_name if stage else None) or "its source stage"
    if stage is not None and policy.soak:
        parts.append(f"soak: {format_duration(policy.soak)} in {source}")
    if stage is not None and policy.auto:
        where = rules.channel_for(target, policy)
        parts.append(f"auto: promotes itself when {source} changes (posted in {where})")
    windows = [w.span() for w in rules.windows if w.applies_to(target)]
    if windows:
        parts.append("runs only in the window " + " or ".join(windows))
    return parts


def check_config(path: Path) -> int:
    """`promote-bot check-config`: validate offline, print a summary; 0, or 2 and one line."""
    rules = load_config(path, setting="")  # a ConfigError: one line on stderr, exit 2
    print(config_summary(rules, str(path)))
    return 0


def audit(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """`promote-bot audit`: the audit log of PROMOTE_BOT_DB, read only, streamed to stdout."""
    from bot import export
    from bot.core.commands import is_target_pattern
    from bot.store import open_reader

    out = out or sys.stdout
    try:
        since = export.when(args.since) if args.since else None
        until = export.when(args.until, end=True) if args.until else None
    except ValueError as exc:
        raise ConfigError(f"--since/--until: {exc}") from None
    if since is not None and until is not None and until <= since:
        raise ConfigError("--until must be after --since")
    if args.target is not None and not is_target_pattern(args.target):
        raise ConfigError(
            f"--target: {args.target!r} is not a target or pattern like znyx:*:prod or whop:*"
        )
    settings, problems = load_settings_all()
    db_problems = [p for p in problems if p.startswith("PROMOTE_BOT_DB")]
    if db_problems:
        raise ConfigError("\n".join(db_problems))
    try:
        reader = open_reader(settings.promote_bot_db)
        models = [Settings, *(spec.settings for spec in PROVIDERS.values())]
        entries = reader.audit_entries(since, until, args.target)
        export.write(entries, out, args.format, secrets=logs.secret_values(models))
        out.flush()
    except StoreError as exc:
        raise ConfigError(str(exc)) from None
    except BrokenPipeError:  # `| head`: whoever reads has what they wanted
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="promote-bot",
        description="Promote releases from Slack, behind a role map, approvals and an audit trail.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    labels = ", ".join(spec.label for spec in PROVIDERS.values())
    commands.add_parser(
        "serve",
        help="run the bot for Slack: Socket Mode when SLACK_APP_TOKEN is set, "
        f"else HTTP on {SLACK_PATH} (port from PORT)",
        description="Run the bot for Slack. Settings come from the environment; see README.md.",
    )
    shell_parser = commands.add_parser(
        "shell",
        help="the same bot in a terminal: type /promote …, approve N, reject N, as USER",
        description="Run the bot in a terminal, as a chosen user. With --sandbox it runs local "
        f"fakes of {labels}, so no account of any kind is needed. "
        "Reads commands from stdin when it is not a terminal. Its log (warnings, such as a "
        "provider that could not be read) goes to $XDG_STATE_HOME/promote-bot/shell.log "
        "(~/.local/state/promote-bot/shell.log), not among what it prints.",
    )
    shell_parser.add_argument(
        "--as", dest="as_user", metavar="USER", help="act as this Slack user id (sandbox: U_ALICE)"
    )
    shell_parser.add_argument(
        "--sandbox", action="store_true", help="use the built-in sandbox providers and world"
    )
    shell_parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="config file (default: PROMOTE_BOT_CONFIG); with --sandbox, only its roles, "
        "members and policies are used, to rehearse a role map",
    )
    check_parser = commands.add_parser(
        "check-config",
        help="validate a config file offline and print what it sets up",
        description="Validate a config file without starting the bot and print its roles, "
        "members, user groups, providers and the approval policy each target gets. "
        "Exit status 0 when valid, 2 (with one line saying why) when not.",
    )
    check_parser.add_argument(
        "file",
        nargs="?",
        type=Path,
        metavar="FILE",
        help="the config file (default: PROMOTE_BOT_CONFIG, else ./promote-bot.toml)",
    )
    audit_parser = commands.add_parser(
        "audit",
        help="print the audit log (of PROMOTE_BOT_DB) as JSON lines or CSV",
        description="Print the audit log of the database PROMOTE_BOT_DB names (SQLite or "
        "PostgreSQL), oldest first, one entry at a time as it is read: never all in memory. "
        "The database is only read (never written or upgraded), so this may run beside a "
        "serving bot. Secrets are never included. Times are UTC unless they say otherwise.",
    )
    audit_parser.add_argument(
        "--since", metavar="DATE", help="from this date or time on (2026-11-01, 2026-11-01T10:00)"
    )
    audit_parser.add_argument(
        "--until",
        metavar="DATE",
        help="before this time; a date alone includes that whole day (2026-11-30)",
    )
    audit_parser.add_argument(
        "--target", metavar="PATTERN", help="only these targets (znyx:*:prod, whop:*)"
    )
    audit_parser.add_argument(
        "--format",
        choices=("jsonl", "csv"),
        default="jsonl",
        help="JSON lines (default) or CSV with a header row",
    )
    return parser


def _configure_logging(shell: bool) -> None:
    """LOG_LEVEL and LOG_FORMAT, read before the other settings are validated (so that their
    problems are reported whatever they are); every secret setting's value is redacted. The
    shell logs to a file of its own (`logs.shell_log`), never among what it prints."""
    level = os.environ.get("LOG_LEVEL", "").upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        level = "WARNING" if shell else "INFO"  # a bad value is reported with the settings
    fmt = "json" if os.environ.get("LOG_FORMAT", "").lower() == "json" else "text"
    stream = logs.shell_log()[0] if shell else None
    logs.configure(level, fmt, secrets=logs.secret_values(_secret_models()), stream=stream)


def _secret_models() -> list[type[BaseSettings]]:
    """The settings whose secret values must never be logged or kept in the shell's history."""
    return [Settings, *(spec.settings for spec in PROVIDERS.values())]


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _configure_logging(shell=args.command == "shell")
    # Per-request INFO lines from the HTTP clients cost CPU under load (5.6% of the bot's samples
    # at c=128) and say nothing the audit log and our own warnings don't.
    for noisy in ("slack_sdk", "httpx", "httpcore", SOCKET_LOG.name):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        if args.command == "check-config":  # offline: needs no other setting
            default = os.environ.get("PROMOTE_BOT_CONFIG") or "promote-bot.toml"
            return check_config(args.file or Path(default))
        if args.command == "audit":  # the database only
            return audit(args)
        if args.command == "serve":  # every problem at once, the config's and providers' too
            settings, problems = load_settings_all()
            asyncio.run(serve(settings, problems))
        elif args.command == "shell":
            return asyncio.run(shell(load_settings(), args))
    except ConfigError as exc:
        for line in str(exc).splitlines():
            print(f"promote-bot: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: for the shell, left as interrupted programs are
        return 130 if args.command == "shell" else 0
    return 0
