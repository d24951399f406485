"""Chaos and replica runs against real `promote-bot serve` processes, on demand (not pytest).

`python -m bench.chaos [--rounds 6] [--seed 1] [--requests 5] [--clickers 50]` starts a real
PostgreSQL (pgserver), a fake Slack and a fake Znyx on loopback (bot/sandbox), and replicas
of `promote-bot serve` sharing one database, then runs:

1. replicas: `--requests` requests on two replicas, each approved by `--clickers` people at
   once, their clicks spread over both replicas;
2. chaos: `--rounds` rounds of new requests, raced approvals and form rejections while the
   fake Slack fails the bot's calls at random (timeouts, 5xx, 429 with Retry-After, calls
   carried out after the bot's timeout, connections reset after the work was done), and one
   replica killed with SIGKILL and started again each round;
3. a PostgreSQL restart under two replicas, `/healthz` and `/readyz` polled all along.

After each run, once Slack can no longer land a late call and the bot had time to look again,
the end state is checked against the truth: Znyx's own write log holds at most one write per
request (exactly one for each that succeeded, none that the bot did not report), every copy of
every release message in the fake Slack is the stored version's rendering (no live buttons on
an ended request, no stale "Promoting now…"), and every ended request has one outcome reply in
its thread. Prints a table of figures; exits 1 if anything is wrong.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import sys
import tempfile
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
from aiohttp import web

from bot.config import load_config
from bot.core import render
from bot.core.model import Request, State
from bot.core.rules import Rules
from bot.sandbox.slack import Failure, FakeSlack
from bot.sandbox.slack_requests import SlackSender
from bot.sandbox.znyx import FakeZnyx
from bot.store import open_any
from bot.transports.slack import blocks
from bot.transports.slack.blocks import APPROVE, REJECT
from bot.web import WebServer, listening_port

ROOT = Path(__file__).resolve().parents[1]
SECRET = "chaos-signing-secret-0123456789abcdef"
ZNYX_TOKEN = "chaos-znyx-token"
REQUESTER = "U0ALICE"
APPROVERS = [f"U0APPROVER{i:02d}" for i in range(50)]
PROJECTS = 120  # Znyx projects: every request promotes a thing of its own
GONE = (httpx.HTTPError, RuntimeError)  # a request to a process killed under it
LATE = 11.0  # seconds: past the bot's 10 s Slack timeout (bot/cli.py SLACK_TIMEOUT_SECONDS)
# The Web API methods faults are injected into, and the kinds each may get.
WRITES = ("chat.postMessage", "chat.update")
READS = ("conversations.history", "conversations.replies")


def config_text() -> str:
    members = "\n".join(f'{u} = ["policy-engineer"]' for u in APPROVERS)
    projects = "\n".join(f'p{i:02d} = "proj-p{i:02d}"' for i in range(PROJECTS))
    return f"""
[roles]
release-manager = ["bundle:publish"]
policy-engineer = ["bundle:publish"]

[members]
{REQUESTER} = ["release-manager"]
{members}

[znyx]
org = "org-chaos"

[znyx.projects]
{projects}
"""


def seeded_znyx() -> FakeZnyx:
    znyx = FakeZnyx(org_id="org-chaos", tokens={ZNYX_TOKEN: {"bundle:publish"}})
    for i in range(PROJECTS):
        project = f"proj-p{i:02d}"
        znyx.add_project(project)
        for n, env in enumerate(("dev", "staging", "prod")):
            znyx.publish(project, env, f"sha256:{i:02d}{n}".ljust(71, "0"))
    return znyx


def fault_kind(failure: Failure) -> str:
    if failure.late:
        return "late-landing"
    if failure.hang:
        return "timeout"
    if failure.reset:
        return "reset after doing"
    if failure.status == 429:
        return "429 Retry-After"
    return f"{failure.status}" if failure.status >= 500 else "ok:false"


@dataclass
class ChaosSlack(FakeSlack):
    """The fake Slack, failing a share (`rate`) of the bot's calls at random while `chaos`."""

    rate: float = 0.0
    rng: random.Random = field(default_factory=random.Random)
    chaos: bool = False
    injected: Counter = field(default_factory=Counter)
    in_flight: int = 0

    def _choose(self, method: str) -> Failure:
        kinds = ["timeout", "5xx", "429"] + (["late", "late", "reset"] if method in WRITES else [])
        kind = self.rng.choice(kinds)
        if kind == "timeout":  # never carried out; the bot's timeout ends its wait
            return Failure(hang=LATE, status=500)
        if kind == "5xx":
            return Failure(status=self.rng.choice([500, 502, 503]))
        if kind == "429":
            return Failure(status=429, retry_after=self.rng.choice([1, 2]))
        if kind == "late":  # carried out, and answered, after the bot stopped waiting
            return Failure(late=LATE)
        return Failure(reset=True)  # carried out; the connection drops before the answer

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        if self.chaos and method in WRITES + READS and self.rng.random() < self.rate:
            self.failures[method] = self._choose(method)
        self.in_flight += 1
        try:
            return await super()._api(request)
        finally:
            self.in_flight -= 1

    async def _fail(self, request, method, args, failure):  # type: ignore[no-untyped-def]
        self.injected[fault_kind(failure)] += 1
        return await super()._fail(request, method, args, failure)

    async def quiet(self, within: float = 60.0) -> None:
        """Faults off; wait until no call is held open and no late call is still to land."""
        self.chaos = False
        self.failures.clear()
        async with asyncio.timeout(within):
            while self.in_flight or self._late:  # noqa: ASYNC110 (no event for these)
                await asyncio.sleep(0.1)


class Bot:
    """One `promote-bot serve` process, its output in a log file, and a signed sender."""

    def __init__(self, env: dict[str, str], slack_url: str, log: Path) -> None:
        self.env, self.slack_url, self.log = env, slack_url, log
        self.process: asyncio.subprocess.Process | None = None
        self.sender: SlackSender | None = None
        self.url = ""

    async def start(self) -> Bot:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            "serve",
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        assert self.process.stdout is not None
        async with asyncio.timeout(60):
            port = await listening_port(self.process.stdout)
        self.url = f"http://127.0.0.1:{port}"
        self.sender = SlackSender(self.url, SECRET, self.slack_url)
        asyncio.get_running_loop().create_task(self._drain(self.process))
        return self

    async def _drain(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        with self.log.open("a") as out:
            while line := await process.stdout.readline():
                out.write(line.decode(errors="replace"))

    async def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.sender is not None:
            await self.sender.aclose()
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(sig)
            await asyncio.wait_for(self.process.wait(), 40)

    async def status(self, http: httpx.AsyncClient, path: str) -> int:
        try:
            return (await http.get(self.url + path, timeout=2.0)).status_code
        except httpx.HTTPError:
            return 0


@dataclass
class Figures:
    rows: list[tuple[str, str]] = field(default_factory=list)
    wrong: int = 0  # anything that counts against the run

    def add(self, name: str, value: object, *, bad: bool = False) -> None:
        self.rows.append((name, str(value)))
        self.wrong += bool(bad)


@dataclass
class Verdict:
    requests: int = 0
    writes: int = 0
    doubled_writes: int = 0
    unreported_writes: int = 0  # a write the request does not say it made
    missing_writes: int = 0  # succeeded, with no write
    wrong_messages: int = 0
    doubled_replies: int = 0
    missing_replies: int = 0
    unposted: int = 0  # open requests with no release message at all
    # Replies still owed by a claim a killed process holds (looked for once it runs out).
    delayed_replies: list[str] = field(default_factory=list)
    states: Counter = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (
            self.doubled_writes
            or self.unreported_writes
            or self.missing_writes
            or self.wrong_messages
            or self.doubled_replies
            or self.missing_replies
            or self.unposted
        )


def check(db: str, rules: Rules, slack: FakeSlack, znyx: FakeZnyx) -> Verdict:
    """The end state against the truth: Znyx's write log, the store, what Slack shows."""
    verdict = Verdict()
    store = open_any(db)
    try:
        requests = sorted(store.in_states(list(State)), key=lambda r: r.id)
    finally:
        store.close()
    claims = thread_claims(db)
    for request in requests:
        verdict.requests += 1
        verdict.states[request.state.value] += 1
        _check_writes(request, znyx, verdict)
        _check_messages(request, rules, slack, verdict, claims.get(request.id))
    return verdict


def thread_claims(db: str) -> dict[int, datetime]:
    """Until when each outcome reply a process took on (and may be posting) is its alone."""
    import psycopg

    with psycopg.connect(db) as c:
        rows = c.execute(
            "SELECT id, thread_until FROM requests WHERE thread_posted = 2 AND thread_until > %s",
            [datetime.now(UTC)],
        ).fetchall()
    return dict(rows)


def _check_writes(request: Request, znyx: FakeZnyx, verdict: Verdict) -> None:
    project = getattr(request.action, "project_id", "")
    writes = [c for c in znyx.writes if f"/projects/{project}/" in c.path]
    verdict.writes += len(writes)
    where = f"#{request.id} ({request.state.value}, {len(writes)} writes)"
    if len(writes) > 1:
        verdict.doubled_writes += len(writes) - 1
        verdict.problems.append(f"{where}: Znyx was written more than once")
    if request.state is State.SUCCEEDED and not writes:
        verdict.missing_writes += 1
        verdict.problems.append(f"{where}: succeeded with no write")
    if writes and request.state not in (State.SUCCEEDED, State.UNKNOWN, State.FAILED):
        verdict.unreported_writes += 1
        verdict.problems.append(f"{where}: written, yet the request says it was not")
    if writes and request.state is State.FAILED and _landed(znyx, project):
        verdict.unreported_writes += 1
        verdict.problems.append(f"{where}: the promotion landed, yet the request says it failed")


def _landed(znyx: FakeZnyx, project: str) -> bool:
    prod = znyx.projects[project]["prod"]
    return any(b.published_by != "ci" for b in prod)


def _check_messages(
    request: Request,
    rules: Rules,
    slack: FakeSlack,
    verdict: Verdict,
    claimed_until: datetime | None,
) -> None:
    view = render.request_view(request, rules.policy_of(request), rules.role_map, ())
    expected = json.loads(json.dumps(blocks.release_message(view)))
    shown = slack.release_messages(request.id)
    if not shown and not request.state.is_final:
        verdict.unposted += 1
        verdict.problems.append(f"#{request.id} ({request.state.value}): no release message")
    for message in shown:
        if message.get("blocks") != expected or message.get("text") != view.summary:
            verdict.wrong_messages += 1
            verdict.problems.append(
                f"#{request.id} ({request.state.value}): message {message['ts']} shows "
                f"{message.get('text')!r}, not {view.summary!r}"
            )
    if not request.state.is_final or not shown:
        return
    channel = shown[0]["channel"]
    replies = [
        m for m in slack.messages.get(channel, []) if m.get("thread_ts") in {s["ts"] for s in shown}
    ]
    if len(replies) > 1:
        verdict.doubled_replies += len(replies) - 1
        verdict.problems.append(f"#{request.id}: {len(replies)} outcome replies in its thread")
    reply_text, reply_blocks = blocks.thread_reply(view)
    reply_blocks = json.loads(json.dumps(reply_blocks))
    if replies and (replies[0].get("text"), replies[0].get("blocks")) != (reply_text, reply_blocks):
        verdict.wrong_messages += 1
        verdict.problems.append(f"#{request.id}: its outcome reply is {replies[0].get('text')!r}")
    if not replies and claimed_until is not None:
        verdict.delayed_replies.append(f"#{request.id} (held until {claimed_until:%H:%M:%S})")
    elif not replies:
        verdict.missing_replies += 1
        verdict.problems.append(f"#{request.id} ({request.state.value}): no outcome reply")


async def settled(
    db: str, rules: Rules, slack: ChaosSlack, znyx: FakeZnyx, within: float
) -> Verdict:
    """Check until the end state is clean, or `within` seconds passed: the bot brings messages
    back after its settle time (30 s after a lost answer) and tries failed ones with backoff."""
    await slack.quiet()
    deadline = time.monotonic() + within
    while True:
        verdict = check(db, rules, slack, znyx)
        if verdict.clean or time.monotonic() > deadline:
            return verdict
        await asyncio.sleep(2.0)


# --- the runs -------------------------------------------------------------------------


@dataclass
class Run:
    """One run's world: a fresh database, fresh fakes on loopback, and its replicas."""

    name: str
    folder: Path
    db: str
    slack: ChaosSlack
    znyx: FakeZnyx
    rules: Rules
    env: dict[str, str]
    slack_url: str
    bots: list[Bot] = field(default_factory=list)
    clicks: int = 0

    async def requested(self, bot: Bot, project: int) -> int:
        """Send a command; the id of the request it made (0: none, the answer says why)."""
        assert bot.sender is not None
        before = set(self._ids())
        with contextlib.suppress(*GONE):
            await bot.sender.command(f"znyx p{project:02d} staging", REQUESTER)
        async with asyncio.timeout(30):
            while not (new := set(self._ids()) - before):  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        return max(new)

    def _ids(self) -> list[int]:
        store = open_any(self.db)
        try:
            return [r.id for r in store.in_states(list(State))]
        finally:
            store.close()

    async def click(self, bot: Bot, action: str, request_id: int, user: str) -> int:
        assert bot.sender is not None
        self.clicks += 1
        try:
            return (await bot.sender.click(action, request_id, user)).status_code
        except GONE:
            return 0  # the process was killed under it (its sender closed)

    async def reject(self, bot: Bot, request_id: int, user: str) -> None:
        """Reject… and its form, as a person does it."""
        assert bot.sender is not None
        before = len(self.slack.views)
        if await self.click(bot, REJECT, request_id, user) != 200:
            return

        def opened(slack: FakeSlack) -> dict | None:
            return next((v for v in slack.views[before:] if _form_of(v) == str(request_id)), None)

        with contextlib.suppress(TimeoutError):  # a form that never opened is left alone
            await self.slack.wait_for(lambda s: opened(s) is not None, within=5)
            with contextlib.suppress(*GONE):
                await bot.sender.submit(opened(self.slack), user, "not this one (chaos run)")  # type: ignore[arg-type]

    async def ended(self, ids: list[int], within: float) -> None:
        """Wait until every one of `ids` has ended (or `within` seconds passed)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                while True:
                    store = open_any(self.db)
                    try:
                        if all((r := store.get(i)) and r.state.is_final for i in ids):
                            return
                    finally:
                        store.close()
                    await asyncio.sleep(0.2)

    async def shown(self, request_id: int, within: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await self.slack.wait_for(lambda s: bool(s.release_messages(request_id)), within)
            return True
        return False


async def new_run(
    name: str, base: Path, db: str, stack: contextlib.AsyncExitStack, **env: str
) -> Run:
    folder = base / name
    folder.mkdir()
    slack, znyx = ChaosSlack(), seeded_znyx()
    slack_server = await stack.enter_async_context(WebServer(slack.app()))
    znyx_server = await stack.enter_async_context(WebServer(znyx.app()))
    config = folder / "promote-bot.toml"
    config.write_text(config_text())
    environ = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLACK_", "ZNYX_", "WHOP_", "ASC_", "PROMOTE_BOT"))
    }
    environ.update(
        PYTHONPATH=str(ROOT),
        SLACK_BOT_TOKEN=FakeSlack.token,
        SLACK_SIGNING_SECRET=SECRET,
        SLACK_API_URL=f"{slack_server.url}/api/",
        ZNYX_API_URL=znyx_server.url,
        ZNYX_TOKEN=ZNYX_TOKEN,
        PROMOTE_BOT_CONFIG=str(config),
        PROMOTE_BOT_DB=db,
        PORT="0",
        **env,
    )
    return Run(name, folder, db, slack, znyx, load_config(config), environ, slack_server.url)


async def start_bots(run: Run, n: int, stack: contextlib.AsyncExitStack) -> None:
    for i in range(n):
        bot = Bot(run.env, run.slack_url, run.folder / f"bot{i}.log")
        run.bots.append(await bot.start())
    stack.push_async_callback(lambda: asyncio.gather(*(b.stop() for b in run.bots)))


def keep_calls(run: Run) -> None:
    """What the fake Slack was sent, one JSON line a call, next to the bots' logs."""
    with (run.folder / "slack-calls.jsonl").open("w") as out:
        for call in run.slack.calls:
            out.write(json.dumps({"at": call.at, "method": call.method, "args": call.args}) + "\n")


def verdict_rows(figures: Figures, run: str, verdict: Verdict) -> None:
    figures.add(f"{run}: requests (by end state)", _states(verdict))
    figures.add(f"{run}: provider writes", verdict.writes)
    doubled = verdict.doubled_writes + verdict.unreported_writes + verdict.missing_writes
    figures.add(f"{run}: doubled / unreported / missing writes", _three(verdict), bad=bool(doubled))
    figures.add(f"{run}: wrong messages", verdict.wrong_messages, bad=bool(verdict.wrong_messages))
    figures.add(
        f"{run}: doubled / missing thread replies",
        f"{verdict.doubled_replies} / {verdict.missing_replies}",
        bad=bool(verdict.doubled_replies or verdict.missing_replies),
    )
    if verdict.delayed_replies:
        figures.add(
            f"{run}: replies held by a killed process's claim",
            ", ".join(verdict.delayed_replies),
        )
    if verdict.unposted:
        figures.add(f"{run}: open requests never posted", verdict.unposted, bad=True)


def _states(verdict: Verdict) -> str:
    parts = ", ".join(f"{n} {s}" for s, n in sorted(verdict.states.items()))
    return f"{verdict.requests} ({parts})"


def _three(verdict: Verdict) -> str:
    return f"{verdict.doubled_writes} / {verdict.unreported_writes} / {verdict.missing_writes}"


async def replicas_run(
    args: argparse.Namespace, pg: Postgres, base: Path, figures: Figures
) -> Verdict:
    async with contextlib.AsyncExitStack() as stack:
        run = await new_run("replicas", base, pg.fresh(), stack)
        await start_bots(run, 2, stack)
        one, two = run.bots
        ids = [await run.requested(run.bots[i % 2], i) for i in range(args.requests)]
        for request_id in ids:
            await run.shown(request_id, 20)
        clicks = [
            run.click(one if n % 2 else two, APPROVE, request_id, user)
            for request_id in ids
            for n, user in enumerate(APPROVERS[: args.clickers])
        ]
        started = time.monotonic()
        statuses = Counter(await asyncio.gather(*clicks))
        acked = time.monotonic() - started
        verdict = await settled(run.db, run.rules, run.slack, run.znyx, 60)
        figures.add("replicas: raced clicks (acks by status)", _counts(run.clicks, statuses))
        figures.add("replicas: all clicks acked in (s)", f"{acked:.2f}")
        verdict_rows(figures, "replicas", verdict)
        return verdict


async def chaos_run(
    args: argparse.Namespace, pg: Postgres, base: Path, figures: Figures
) -> Verdict:
    rng = random.Random(args.seed)
    async with contextlib.AsyncExitStack() as stack:
        run = await new_run("chaos", base, pg.fresh(), stack, PROMOTE_BOT_LEASE_SECONDS="2")
        run.znyx.promote_delay = 0.3  # a window for the kill -9 to land in
        run.slack.rng, run.slack.rate = random.Random(args.seed + 1), args.fault_rate
        await start_bots(run, 2, stack)
        kills, project = 0, 0
        run.slack.chaos = True
        for round_ in range(args.rounds):
            ids = []
            for _ in range(args.per_round):
                ids.append(await run.requested(rng.choice(run.bots), project))
                project += 1
            for request_id in ids:
                await run.shown(request_id, 3)
            work = []
            for request_id in ids:
                roll = rng.random()
                if roll < 0.7:
                    clickers = rng.sample(APPROVERS, 10)
                    work += [
                        run.click(rng.choice(run.bots), APPROVE, request_id, u) for u in clickers
                    ]
                elif roll < 0.85:
                    work.append(run.reject(rng.choice(run.bots), request_id, rng.choice(APPROVERS)))
            victim = run.bots[round_ % 2]

            async def kill(victim: Bot = victim) -> None:
                await asyncio.sleep(rng.uniform(0.0, 1.0))
                await victim.stop(signal.SIGKILL)

            await asyncio.gather(*work, kill())
            kills += 1
            await victim.start()
            await asyncio.sleep(rng.uniform(1.0, 3.0))
        faults = dict(run.slack.injected)
        verdict = await settled(run.db, run.rules, run.slack, run.znyx, args.settle)
        figures.add("chaos: rounds", args.rounds)
        figures.add("chaos: clicks", run.clicks)
        figures.add("chaos: Slack faults injected", _kinds(faults))
        figures.add("chaos: kill -9s", kills)
        verdict_rows(figures, "chaos", verdict)
        keep_calls(run)
        return verdict


async def postgres_run(
    args: argparse.Namespace, pg: Postgres, base: Path, figures: Figures
) -> Verdict:
    async with contextlib.AsyncExitStack() as stack:
        run = await new_run("pg-restart", base, pg.fresh(), stack)
        await start_bots(run, 2, stack)
        before = [await run.requested(run.bots[i % 2], i) for i in range(3)]
        for request_id in before:
            await run.shown(request_id, 20)
        seen: dict[tuple[int, str], list[int]] = {}
        polling = asyncio.Event()

        async def poll() -> None:
            async with httpx.AsyncClient() as http:
                while not polling.is_set():
                    for i, bot in enumerate(run.bots):
                        for path in ("/healthz", "/readyz"):
                            status = await bot.status(http, path)
                            trail = seen.setdefault((i, path), [])
                            if not trail or trail[-1] != status:
                                trail.append(status)
                    await asyncio.sleep(0.2)

        poller = asyncio.get_running_loop().create_task(poll())
        await asyncio.sleep(1.0)
        # A promotion in flight as the database goes: Znyx answers while it is down.
        run.znyx.promote_delay = 2.0
        await run.click(run.bots[0], APPROVE, before[0], APPROVERS[0])
        async with asyncio.timeout(20):
            while not run.znyx.promote_calls:  # noqa: ASYNC110 (the fake has no event for it)
                await asyncio.sleep(0.02)
        await pg.stop()
        await asyncio.sleep(1.0)
        told: list[str] = []  # what people are told while the database is down
        for i, bot in enumerate(run.bots):
            assert bot.sender is not None
            with contextlib.suppress(*GONE):
                answer = await bot.sender.command(f"znyx p{10 + i:02d} staging", REQUESTER)
                told.append(_told(answer))
        await asyncio.sleep(3.0)
        await pg.start()
        async with asyncio.timeout(60):
            while any(seen.get((i, "/readyz"), [0])[-1] != 200 for i in range(2)):  # noqa: ASYNC110
                await asyncio.sleep(0.2)
        run.znyx.promote_delay = 0.0
        for n, request_id in enumerate(before[1:], start=1):
            await run.click(run.bots[n % 2], APPROVE, request_id, APPROVERS[n])
        after = await run.requested(run.bots[0], 20)  # a new request, once it is back
        await run.shown(after, 20)
        await run.click(run.bots[1], APPROVE, after, APPROVERS[9])
        await run.ended([*before, after], within=60)
        verdict = await settled(run.db, run.rules, run.slack, run.znyx, 60)
        polling.set()
        await poller
        for (i, path), trail in sorted(seen.items()):
            expected = [200] if path == "/healthz" else [200, 503, 200]
            figures.add(
                f"pg restart: bot {i + 1} {path}",
                " → ".join(map(str, trail)),
                bad=trail != expected,
            )
        figures.add("pg restart: commands during the outage were told", "; ".join(told))
        succeeded = verdict.states.get("succeeded", 0)
        figures.add(
            "pg restart: succeeded (one in flight, two from before, one after)",
            f"{succeeded} of {len(before) + 1}",
            bad=succeeded < len(before) + 1,
        )
        verdict_rows(figures, "pg restart", verdict)
        return verdict


def _folder(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _tracebacks(base: Path) -> int:
    """How many tracebacks the bots logged, in every run."""
    logs = sorted(base.glob("*/bot*.log"))
    return sum(p.read_text(errors="replace").count("Traceback") for p in logs)


def _form_of(view: dict) -> str | None:
    """The request a form decides (its private_metadata names it)."""
    try:
        meta = json.loads(view.get("private_metadata") or "{}")
    except ValueError:
        return None
    return str(meta.get("request_id")) if isinstance(meta, dict) else None


def _told(answer: httpx.Response) -> str:
    """The ack's status and the start of what it said."""
    try:
        text = str(answer.json().get("text", ""))
    except ValueError:
        text = answer.text
    return f"{answer.status_code} {text[:70]!r}"


def _counts(total: int, statuses: Counter) -> str:
    parts = ", ".join(f"{n}× {s or 'no answer'}" for s, n in sorted(statuses.items()))
    return f"{total} ({parts})"


def _kinds(faults: dict[str, int]) -> str:
    parts = ", ".join(f"{n} {k}" for k, n in sorted(faults.items(), key=lambda kv: -kv[1]))
    return f"{sum(faults.values())} ({parts})"


# --- PostgreSQL -----------------------------------------------------------------------


class Postgres:
    """A real PostgreSQL server (pgserver's binaries), on a Unix socket in `folder`."""

    def __init__(self, folder: Path) -> None:
        with warnings.catch_warnings():  # "XDG_RUNTIME_DIR is not set": nothing to act on
            warnings.simplefilter("ignore")
            import pgserver

        self.server = pgserver.get_server(folder, cleanup_mode="stop")
        from psycopg.conninfo import conninfo_to_dict

        self.socket = str(conninfo_to_dict(self.server.get_uri())["host"])
        self._n = 0

    def fresh(self) -> str:
        import psycopg

        self._n += 1
        name = f"chaos_{os.getpid()}_{self._n}"
        uri = f"postgresql://postgres@/postgres?host={self.socket}"
        with psycopg.connect(uri, autocommit=True) as c:
            c.execute(f"CREATE DATABASE {name}")
        return f"postgresql://postgres@/{name}?host={self.socket}"

    async def stop(self) -> None:
        await asyncio.to_thread(self._ctl, ["-w", "-m", "fast", "stop"])

    async def start(self) -> None:
        options = ["-w", "-o", '-h ""', "-o", f"-k {self.socket}", "-l", str(self.server.log)]
        await asyncio.to_thread(self._ctl, [*options, "start"])

    def _ctl(self, args: list[str]) -> None:
        from pgserver._commands import pg_ctl

        pg_ctl(args, pgdata=self.server.pgdata, user=self.server.system_user, timeout=60)

    def close(self) -> None:
        self.server.cleanup()
        # pgserver stops only the server it started itself: after a restart, stop that one.
        if (Path(self.server.pgdata) / "postmaster.pid").exists():
            self._ctl(["-w", "-m", "fast", "stop"])


# --- main -----------------------------------------------------------------------------


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.chaos", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--rounds", type=int, default=6, help="chaos rounds (one kill -9 each)")
    parser.add_argument("--seed", type=int, default=1, help="seed of every random choice")
    parser.add_argument("--requests", type=int, default=5, help="requests of the replica run")
    parser.add_argument("--clickers", type=int, default=50, help="approvals raced per request")
    parser.add_argument("--per-round", type=int, default=8, help="new requests per chaos round")
    parser.add_argument("--fault-rate", type=float, default=0.5, help="share of Slack calls failed")
    parser.add_argument("--settle", type=float, default=120.0, help="seconds allowed to converge")
    parser.add_argument(
        "--only", choices=("replicas", "chaos", "postgres"), action="append", help="run only these"
    )
    parser.add_argument(
        "--keep",
        type=Path,
        help="a new folder to keep the bots' logs and what the fake Slack was sent in",
    )
    args = parser.parse_args(argv)
    args.clickers = max(1, min(args.clickers, len(APPROVERS)))
    if args.requests + args.rounds * args.per_round > PROJECTS - 25:
        parser.error(
            f"at most {PROJECTS - 25} requests in all (--requests, --rounds × --per-round)"
        )
    return args


async def amain(args: argparse.Namespace) -> int:
    started = time.monotonic()
    figures = Figures()
    verdicts: dict[str, Verdict] = {}
    runs = {"replicas": replicas_run, "chaos": chaos_run, "postgres": postgres_run}
    with tempfile.TemporaryDirectory(prefix="promote-bot-chaos-") as tmp:
        base = _folder(args.keep or Path(tmp))
        pg = Postgres(base / "pg")
        try:
            for name, run in runs.items():
                if args.only and name not in args.only:
                    continue
                verdicts[name] = await run(args, pg, base, figures)
        finally:
            pg.close()
            tracebacks = _tracebacks(base)
        figures.add("tracebacks in the bots' logs", tracebacks)
    figures.add("run time (s)", f"{time.monotonic() - started:.0f}")
    width = max(len(name) for name, _ in figures.rows)
    print(f"promote-bot chaos run (seed {args.seed})")
    for name, value in figures.rows:
        print(f"  {name:<{width}}  {value}")
    for name, verdict in verdicts.items():
        for problem in verdict.problems:
            print(f"  ! {name}: {problem}")
    print("all clean" if not figures.wrong else f"{figures.wrong} figure(s) wrong")
    return 1 if figures.wrong else 0


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(amain(parse(argv)))


if __name__ == "__main__":
    sys.exit(main())
