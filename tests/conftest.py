"""Fixtures that start real servers on loopback: fake Slack, fake Znyx, and the bot itself."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import sys
import threading
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from bot.cli import SLACK_PATH, SLACK_TIMEOUT_SECONDS, SlackBot, start_slack_bot
from bot.config import Settings
from bot.core.context import utc_now
from bot.core.model import State
from bot.core.ports import StoreError
from bot.sandbox.appstore import FakeAppStore
from bot.sandbox.slack import FakeSlack
from bot.sandbox.slack_requests import SlackSender
from bot.sandbox.whop import FakeWhop
from bot.sandbox.znyx import FakeZnyx
from bot.store import AnyStore, open_any
from bot.transports.slack.app import web_app as slack_web_app
from bot.web import WebServer, listening_port

ROOT = Path(__file__).resolve().parents[1]

IOS_APP = "1234567890"
ASC_ISSUER = "69a6de70-0000-47e3-e053-5b8c7c11a4d1"
ASC_KID = "2X9R4HXF34"
ASC_KEY = ec.generate_private_key(ec.SECP256R1())
ASC_PEM = ASC_KEY.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
).decode()
STOREFRONT = "app_storefront01"
BACKOFFICE = "app_backoffice01"
WHOP_KEY = "whop-api-key-test"
SIGNING_SECRET = "test-signing-secret-0123456789abcdef"
ZNYX_TOKEN = "znyx-ci-token"
ZNYX_WEBHOOK_SECRET = "znyx-webhook-secret-0123456789"

ALICE = "U0ALICE"  # release manager: requests and approves everything
BOB = "U0BOB"  # policy engineer: bundle:publish
DAVE = "U0DAVE"  # another release manager
CAROL = "U0CAROL"  # mobile developer: builds only, no bundle:publish
MALLORY = "U0MALLORY"  # no roles at all

CONFIG = f"""
[roles]
release-manager = ["bundle:publish", "developer:manage_builds"]
policy-engineer = ["bundle:publish"]
mobile = ["developer:manage_builds"]

[members]
{ALICE} = ["release-manager"]
{BOB} = ["policy-engineer"]
{DAVE} = ["release-manager"]
{CAROL} = ["mobile"]

[znyx]
org = "org-test"

[znyx.projects]
guardrails = "proj-guardrails"
twostage = "proj-twostage"

[appstore.apps]
ios = "{IOS_APP}"

[whop.apps]
storefront = "{STOREFRONT}"
backoffice = "{BACKOFFICE}"
"""


def seed_znyx(znyx: FakeZnyx) -> None:
    znyx.org_id = "org-test"
    znyx.tokens = {ZNYX_TOKEN: {"bundle:publish"}, "znyx-read-only": set()}
    znyx.add_project("proj-guardrails")
    znyx.publish("proj-guardrails", "dev", "sha256:" + "d" * 64)
    znyx.publish("proj-guardrails", "staging", "sha256:" + "5" * 64)
    znyx.publish("proj-guardrails", "prod", "sha256:" + "0" * 64)
    znyx.add_project("proj-twostage", envs=("dev", "staging"))
    znyx.publish("proj-twostage", "staging", "sha256:" + "2" * 64)


@dataclass
class WhopWorld:
    """Names for the seeded Whop builds, so tests read like the story they tell."""

    ios_prod: str
    ios_approved: str
    ios_draft: str
    ios_pending: str
    ios_rejected: str
    android_prod: str
    android_approved: str
    other_app_ios: str


def seed_whop(whop: FakeWhop) -> WhopWorld:
    whop.keys = {WHOP_KEY: {"developer:manage_builds"}, "whop-no-scope": set()}
    add = whop.add_build
    return WhopWorld(
        ios_prod=add(STOREFRONT, "ios", "approved", production=True).id,
        android_prod=add(STOREFRONT, "android", "approved", production=True).id,
        ios_approved=add(STOREFRONT, "ios", "approved").id,
        ios_draft=add(STOREFRONT, "ios", "draft").id,
        ios_pending=add(STOREFRONT, "ios", "pending").id,
        ios_rejected=add(STOREFRONT, "ios", "rejected", review_message="App crashes on launch.").id,
        android_approved=add(STOREFRONT, "android", "approved").id,
        other_app_ios=add(BACKOFFICE, "ios", "approved").id,
    )


@dataclass
class AppStoreWorld:
    v240: str  # editable, build 152 attached
    v230: str  # READY_FOR_DISTRIBUTION: no longer editable
    b150_expired: str
    b152_attached: str
    b153_undeclared: str
    b154_processing: str
    b155_exempt: str


def seed_appstore(asc: FakeAppStore) -> AppStoreWorld:
    asc.issuer_id = ASC_ISSUER
    asc.keys = {ASC_KID: ASC_KEY.public_key()}
    add = asc.add_build
    b150 = add(IOS_APP, "150", expired=True, uses_non_exempt_encryption=False)
    b152 = add(IOS_APP, "152", uses_non_exempt_encryption=False)
    b153 = add(IOS_APP, "153")
    b154 = add(IOS_APP, "154", processing="PROCESSING")
    b155 = add(IOS_APP, "155", uses_non_exempt_encryption=False)
    v240 = asc.add_version(IOS_APP, "2.4.0", build_id=b152.id)
    v230 = asc.add_version(IOS_APP, "2.3.0", state="READY_FOR_DISTRIBUTION", build_id=b150.id)
    return AppStoreWorld(v240.id, v230.id, b150.id, b152.id, b153.id, b154.id, b155.id)


@dataclass
class ManualClock:
    """The bot's clock in tests: the real time until a test sets `at` (then it stays there)."""

    at: datetime | None = None

    def __call__(self) -> datetime:
        return self.at or utc_now()


@dataclass
class World:
    slack: FakeSlack
    znyx: FakeZnyx
    whop: FakeWhop
    builds: WhopWorld
    asc: FakeAppStore
    asc_ids: AppStoreWorld
    bot: SlackBot
    sender: SlackSender
    slack_url: str
    clock: ManualClock = field(default_factory=ManualClock)
    provider_settings: dict = field(default_factory=dict)
    bot_url: str = ""  # where the bot answers HTTP (Slack's events, Znyx's webhooks)

    def posted(self) -> list[dict]:
        """Release messages (top-level posts), in order."""
        return [c.args for c in self.slack.channel_posts() if "thread_ts" not in c.args]

    def thread(self) -> list[dict]:
        return [c.args for c in self.slack.channel_posts() if "thread_ts" in c.args]

    def told(self) -> list[str]:
        """Ephemeral answers sent through response URLs."""
        return [c.args.get("text", "") for c in self.slack.calls_to("response_url")]

    async def requested(self, text: str = "znyx guardrails staging", user: str = ALICE) -> None:
        """Send a valid command and wait for its release message."""
        before = len(self.posted())
        response = await self.sender.command(text, user)
        assert response.status_code == 200 and response.text == ""
        await self.slack.wait_for(lambda s: len(self.posted()) == before + 1)
        # The bot stores the message's ts once Slack has answered: wait for that too.
        async with asyncio.timeout(5):
            pending = self.bot.store.in_states
            while any(r.message_ts is None for r in pending([State.PENDING])):  # noqa: ASYNC110
                await asyncio.sleep(0.01)

    async def answer(self, text: str, user: str = ALICE) -> str:
        """Send a command answered after its ack; return what only the caller was told."""
        before = len(self.told())
        response = await self.sender.command(text, user)
        assert response.status_code == 200 and response.text == ""
        await self.slack.wait_for(lambda s: len(self.told()) == before + 1)
        return self.told()[-1]

    async def opened_form(
        self, action_id: str, request_id: int, user: str, **where: str | float | None
    ) -> dict:
        """Click a button that opens a form (Reject…, Approve with comment…); the modal the
        bot opened with views.open, as the fake Slack answered it."""
        before = len(self.slack.views)
        response = await self.sender.click(action_id, request_id, user, **where)
        assert response.status_code == 200 and response.text == ""
        await self.slack.wait_for(lambda s: len(s.views) == before + 1)
        return self.slack.views[-1]

    async def reject_by_form(
        self, request_id: int, user: str, reason: str, **where: str | float | None
    ) -> httpx.Response:
        """Click Reject…, type `reason` into the form it opens, and submit it."""
        view = await self.opened_form("promote_reject", request_id, user, **where)
        return await self.sender.submit(view, user, reason)

    def dms(self, user: str) -> list[str]:
        """The text of the direct messages the bot sent `user`, in order."""
        return [block_text(m["blocks"]) for m in self.slack.dms(user)]

    async def finished(self) -> str:
        """Wait for the first thread reply and return its text."""
        await self.slack.wait_for(lambda s: len(self.thread()) >= 1)
        return block_text(self.thread()[0]["blocks"])


def block_text(blocks: list[dict]) -> str:
    """All the text in a list of blocks, for assertions."""
    out: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "text" and isinstance(value, str):
                    out.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(blocks)
    return "\n".join(out)


def open_buttons(request_id: int) -> list[tuple[str, str]]:
    """The buttons of an open request's release message: Approve, Approve with comment…,
    Reject…."""
    n = str(request_id)
    return [("promote_approve", n), ("promote_approve_comment", n), ("promote_reject", n)]


def buttons(blocks: list[dict]) -> list[tuple[str, str]]:
    return [
        (e["action_id"], e["value"])
        for b in blocks
        if b["type"] == "actions"
        for e in b["elements"]
    ]


async def spawn_serve(env: dict[str, str]) -> asyncio.subprocess.Process:
    """`promote-bot serve` as a process of its own, its output (stdout and stderr) piped."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "serve",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )


class Output:
    """A process's output (stdout and stderr), collected line by line as it comes."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self._new = asyncio.Event()
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        assert self.process.stdout is not None
        while line := await self.process.stdout.readline():
            self.lines.append(line.decode().rstrip("\n"))
            self._new.set()
        self._new.set()

    async def line(self, *parts: str, within: float = 15.0) -> str:
        """The first line holding every one of `parts`, waiting for it if need be."""
        async with asyncio.timeout(within):
            while True:
                for line in self.lines:
                    if all(p in line for p in parts):
                        return line
                if self._reader.done():
                    raise AssertionError(f"the process ended without {parts}: {self.lines}")
                self._new.clear()
                await self._new.wait()

    async def ended(self, within: float = 15.0) -> int:
        """Wait for the process to end (and its output to be read); its exit status."""
        async with asyncio.timeout(within):
            await self._reader
            return await self.process.wait()


@pytest.fixture
def config_text() -> str:
    """The bot's config file for `world`; a test module may override this fixture."""
    return CONFIG


@pytest.fixture
def slack_groups() -> dict[str, list[str]]:
    """The user groups of `world`'s fake Slack (id → members); a test module may override it."""
    return {}


@pytest.fixture
def slack_timeout() -> float:
    """How long `world`'s bot waits for a Web API call; a test module may override it."""
    return SLACK_TIMEOUT_SECONDS


@pytest.fixture
def world_db(tmp_path: Path) -> Path | str:
    """PROMOTE_BOT_DB of `world`: a SQLite file; a test module may override it (e.g. with
    `shared_db`, to run its tests on PostgreSQL too)."""
    return tmp_path / "promote-bot.db"


@pytest.fixture
async def world(
    tmp_path: Path,
    config_text: str,
    slack_groups: dict[str, list[str]],
    world_db: Path | str,
    slack_timeout: float,
) -> AsyncIterator[World]:
    clock = ManualClock()
    slack = FakeSlack(usergroups=slack_groups, clock=lambda: clock().timestamp())
    znyx = FakeZnyx(clock=clock)
    seed_znyx(znyx)
    whop = FakeWhop()
    builds = seed_whop(whop)
    asc = FakeAppStore()
    asc_ids = seed_appstore(asc)
    config = tmp_path / "promote-bot.toml"
    config.write_text(config_text)
    async with (
        WebServer(slack.app()) as slack_server,
        WebServer(znyx.app()) as znyx_server,
        WebServer(whop.app()) as whop_server,
        WebServer(asc.app()) as asc_server,
    ):
        settings = Settings(
            slack_bot_token=slack.token,
            slack_signing_secret=SIGNING_SECRET,
            slack_api_url=f"{slack_server.url}/api/",
            promote_bot_config=config,
            promote_bot_db=world_db,
        )
        provider_settings = {
            "znyx_api_url": znyx_server.url,
            "znyx_token": ZNYX_TOKEN,
            "whop_api_url": whop_server.url,
            "whop_api_key": WHOP_KEY,
            "asc_api_url": asc_server.url,
            "asc_issuer_id": ASC_ISSUER,
            "asc_key_id": ASC_KID,
            "asc_private_key": ASC_PEM,
            "asc_private_key_path": None,
            "znyx_webhook_secret": ZNYX_WEBHOOK_SECRET,
        }
        bot = await start_slack_bot(
            settings, provider_settings, clock=clock, slack_timeout=slack_timeout
        )
        web_app = bot.web_routes(slack_web_app(bot.app, SLACK_PATH))
        async with WebServer(web_app) as bot_server:
            sender = SlackSender(bot_server.url, SIGNING_SECRET, slack_server.url)
            try:
                yield World(
                    slack,
                    znyx,
                    whop,
                    builds,
                    asc,
                    asc_ids,
                    bot,
                    sender,
                    slack_server.url,
                    clock,
                    provider_settings,
                    bot_server.url,
                )
            finally:
                await sender.aclose()
                await bot.aclose()


# --- `promote-bot serve` as processes of their own -----------------------------------

APPROVERS = [f"U0APPROVER{i:02d}" for i in range(50)]


class Fakes:
    """The fakes a `serve` process talks to: Slack, Znyx and Whop, seeded."""

    def __init__(self) -> None:
        self.slack, self.znyx, self.whop = FakeSlack(), FakeZnyx(), FakeWhop()
        seed_znyx(self.znyx)
        self.builds = seed_whop(self.whop)


@pytest.fixture
async def fakes() -> AsyncIterator[tuple[Fakes, dict[str, str]]]:
    f = Fakes()
    async with (
        WebServer(f.slack.app()) as slack,
        WebServer(f.znyx.app()) as znyx,
        WebServer(f.whop.app()) as whop,
    ):
        urls = {"slack": slack.url, "znyx": znyx.url, "whop": whop.url}
        yield f, urls


def serve_env(tmp_path: Path, urls: dict[str, str], **extra: str) -> dict[str, str]:
    config = tmp_path / "promote-bot.toml"
    members = "\n".join(f'{u} = ["policy-engineer"]' for u in APPROVERS)
    config.write_text(CONFIG.replace("[znyx]", members + "\n\n[znyx]"))
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLACK_", "ZNYX_", "WHOP_", "ASC_", "PROMOTE_BOT"))
    }
    env.update(
        PYTHONPATH=str(ROOT),
        SLACK_BOT_TOKEN=FakeSlack.token,
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        SLACK_API_URL=f"{urls['slack']}/api/",
        ZNYX_API_URL=urls["znyx"],
        ZNYX_TOKEN=ZNYX_TOKEN,
        WHOP_API_URL=urls["whop"],
        WHOP_API_KEY=WHOP_KEY,
        ASC_API_URL="http://127.0.0.1:9",  # never called in these tests
        ASC_ISSUER_ID=ASC_ISSUER,
        ASC_KEY_ID=ASC_KID,
        ASC_PRIVATE_KEY=ASC_PEM,
        PROMOTE_BOT_CONFIG=str(config),
        PROMOTE_BOT_DB=str(tmp_path / "shared.db"),
        PORT="0",
    )
    env.update(extra)
    return env


class Bot:
    """One `promote-bot serve` process and a sender for it."""

    def __init__(self, process: asyncio.subprocess.Process, port: int, slack_url: str) -> None:
        self.process = process
        self.url = f"http://127.0.0.1:{port}"
        self.sender = SlackSender(self.url, SIGNING_SECRET, slack_url)

    @classmethod
    async def start(cls, env: dict[str, str], slack_url: str) -> Bot:
        process = await spawn_serve(env)
        assert process.stdout is not None
        async with asyncio.timeout(30):
            port = await listening_port(process.stdout)
        asyncio.get_running_loop().create_task(_drain(process))
        return cls(process, port, slack_url)

    async def stop(self, sig: int = signal.SIGTERM) -> None:
        await self.sender.aclose()
        if self.process.returncode is None:
            self.process.send_signal(sig)
            await asyncio.wait_for(self.process.wait(), 15)


async def _drain(process: asyncio.subprocess.Process) -> None:
    assert process.stdout is not None
    while await process.stdout.readline():
        pass


# --- threads, each standing for a process of its own -----------------------------------

T = TypeVar("T")


def together(count: int, work: Callable[[threading.Barrier, int], T]) -> tuple[list[T], list]:
    """Run `work(barrier, i)` for i < `count`, each in a thread of its own (as so many
    processes would), all waiting on `barrier` where `work` says; what they returned (in the
    order they finished) and what they raised."""
    barrier = threading.Barrier(count, timeout=60)
    results: list[T] = []
    problems: list[BaseException] = []

    def run(i: int) -> None:
        try:
            results.append(work(barrier, i))
        except BaseException as exc:  # pragma: no cover - told by the caller's assert
            problems.append(exc)
            barrier.abort()  # the others stop waiting for this one: a failure, never a hang

    threads = [threading.Thread(target=run, args=[i]) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, problems


# --- the databases: SQLite files, and one real PostgreSQL for the whole session --------


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real PostgreSQL server (binaries from the `pgserver` package), started once; the
    folder of its Unix socket. Stopped at the end of the session."""
    with warnings.catch_warnings():  # "XDG_RUNTIME_DIR is not set": nothing to act on here
        warnings.simplefilter("ignore")
        import pgserver  # only sessions that test PostgreSQL start it

        server = pgserver.get_server(tmp_path_factory.mktemp("pg"), cleanup_mode="stop")
    try:
        yield str(pgserver_socket(server.get_uri()))
    finally:
        server.cleanup()


def pgserver_socket(uri: str) -> Path:
    from psycopg.conninfo import conninfo_to_dict

    return Path(str(conninfo_to_dict(uri)["host"]))


_DATABASES = itertools.count(1)


def fresh_postgres_database(socket: str) -> str:
    """A new, empty database on the session's server; its URI (a Unix socket, `?host=`)."""
    import psycopg

    name = f"promote_bot_{os.getpid()}_{next(_DATABASES)}"
    with psycopg.connect(f"postgresql://postgres@/postgres?host={socket}", autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    return f"postgresql://postgres@/{name}?host={socket}"


@pytest.fixture(params=["sqlite", "postgres"])
def shared_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """PROMOTE_BOT_DB for one test, on each backend: a SQLite file, or a fresh PostgreSQL
    database."""
    if request.param == "sqlite":
        return str(tmp_path / "shared.db")
    return fresh_postgres_database(request.getfixturevalue("postgres"))


@pytest.fixture
def store_factory(shared_db: str) -> Iterator[Callable[[], AnyStore]]:
    """Opens the test's database again on every call, as another process would (its own
    connection); every store opened is closed after the test."""
    opened: list[AnyStore] = []

    def factory() -> AnyStore:
        store = open_any(shared_db)
        opened.append(store)
        return store

    yield factory
    for store in opened:
        with contextlib.suppress(StoreError):  # closed already, by its own thread
            store.close()
