"""What the benchmarks share: the systems under test as processes, the load generator, the
fakes' process and its counts, the bench config and the things it promotes, and the bot's
database (a SQLite file or a PostgreSQL database) as the harness reads and resets it."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bot.sandbox.slack_requests import SlackSender
from bot.store import is_postgres
from bot.web import listening_port

ROOT = Path(__file__).resolve().parents[1]


def bench_env(urls: Mapping[str, str], config: Path, workers: int | None = None) -> dict[str, str]:
    """The environment of a bot under test: the fakes' URLs and tokens, the bench config, any
    free port; nothing of the caller's own Slack, Znyx or promote-bot settings."""
    from bot.sandbox import world

    return {
        **{
            k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "ZNYX_", "PROMOTE_"))
        },
        "PYTHONPATH": str(ROOT),
        "SLACK_BOT_TOKEN": TOKEN,
        "SLACK_SIGNING_SECRET": SECRET,
        "SLACK_API_URL": f"{urls['slack']}/api/",
        "ZNYX_API_URL": urls["znyx"],
        "ZNYX_TOKEN": world.ZNYX_TOKEN,
        "PROMOTE_BOT_CONFIG": str(config),
        "PORT": "0",
        **({"PROMOTE_BOT_WORKERS": str(workers)} if workers else {}),
    }


class BenchDb:
    """The bot's database as the harness reads and resets it, behind the bot's back (a SQLite
    file or a PostgreSQL URI): `?` marks parameters in both."""

    def __init__(self, where: Path | str) -> None:
        self.where = where

    def run(self, statement: str, params: Sequence[Any] = ()) -> list[tuple]:
        if is_postgres(str(self.where)):
            import psycopg

            with psycopg.connect(str(self.where), autocommit=True) as conn:
                cursor = conn.execute(statement.replace("?", "%s"), params)  # type: ignore[arg-type]
                return cursor.fetchall() if cursor.description else []
        with sqlite3.connect(self.where) as conn:
            return conn.execute(statement, params).fetchall()


SECRET = "bench-signing-secret"
TOKEN = "xoxb-test-token"  # the fake Slack's token
REQUESTER, APPROVER = "U_ALICE", "U_BOB"
COMMAND = "znyx guardrails dev"

ROUNDS = 4  # alternations of bot and baselines per concurrency: this machine's speed drifts
PROJECTS = 900  # Znyx projects seeded: 1,800 things, more than any round promotes

CONFIG = """
[roles]
release-manager = ["bundle:publish", "developer:manage_builds"]

[members]
U_ALICE = ["release-manager"]
U_BOB = ["release-manager"]

[znyx]
org = "org-sandbox"

[znyx.projects]
guardrails = "proj-guardrails"

[policies."znyx:*"]
approvals = 1
"""
CONFIG = CONFIG.replace(
    'guardrails = "proj-guardrails"\n',
    'guardrails = "proj-guardrails"\n' + "".join(f'b{i} = "proj-b{i}"\n' for i in range(PROJECTS)),
)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Process:
    """A server process that prints `listening on http://0.0.0.0:PORT/…` when ready to accept."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.argv, self.env = argv, env
        self.proc: asyncio.subprocess.Process | None = None
        self.port = 0

    async def start(self) -> float:
        """Start it; return seconds from spawn to its first successful signed request."""
        started = time.perf_counter()
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv,
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        assert self.proc.stdout is not None
        self.port = await listening_port(self.proc.stdout)
        asyncio.get_running_loop().create_task(self._drain())
        sender = SlackSender(self.url, SECRET, "http://127.0.0.1:9")
        while (await sender.command("help", REQUESTER)).status_code != 200:  # noqa: ASYNC110
            await asyncio.sleep(0.005)
        await sender.aclose()
        return time.perf_counter() - started

    async def _drain(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while await self.proc.stdout.readline():
            pass

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def db(self) -> BenchDb:
        return BenchDb(self.env["PROMOTE_BOT_DB"])

    def rss_mb(self) -> float:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            await self.proc.wait()


async def load(job: dict) -> dict:
    """Run the load generator in a process of its own."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.load",
        json.dumps(job),
        stdout=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    out, _ = await proc.communicate()
    result = json.loads(out)
    if result["failures"]:
        raise RuntimeError(f"{result['failures']} requests failed in {job['kind']}")
    return result


@dataclass
class Fakes:
    urls: dict[str, str]
    http: httpx.AsyncClient

    async def stats(self, since: float = 0.0, under: list[str] | None = None) -> dict:
        """Counts and arrival times since `since`; thread replies only under the messages
        `under` names, if given (a straggler of an earlier phase is not one of them)."""
        url = f"{self.urls['stats']}/_stats"
        if under is None:
            return (await self.http.get(url, params={"since": since})).json()
        return (await self.http.post(url, json={"since": since, "under": under})).json()

    async def control(self, **body: object) -> None:
        await self.http.post(f"{self.urls['stats']}/_control", json=body)

    async def wait(
        self,
        key: str,
        count: int,
        since: float,
        within: float = 120,
        under: list[str] | None = None,
    ) -> list[float]:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            seen = (await self.stats(since, under))[key]
            if len(seen) >= count:
                return sorted(seen)
            await asyncio.sleep(0.05)
        raise TimeoutError(f"waited for {count} {key}, saw {len(seen)}")


class Things:
    """Command texts that each promote a thing of their own (a project's dev or staging), so
    every command does its full work after the ack: preview read, SQLite, release message."""

    def __init__(self, projects: int) -> None:
        self.texts = [f"znyx b{i} {env}" for env in ("dev", "staging") for i in range(projects)]

        self.fresh = len(self.texts)  # promoted things are taken from the end, once each

    def take(self, db: BenchDb, count: int, *, to_promote: bool = False) -> list[str]:
        """`count` texts, after closing the open requests of earlier rounds (so none is open).
        Rounds that only ask reuse the first things; rounds whose requests will be promoted
        take things never used before (a promoted thing has nothing left to promote)."""
        db.run(
            "UPDATE requests SET state = 'cancelled'"
            " WHERE state IN ('pending', 'approved', 'executing')"
        )
        if to_promote:
            self.fresh -= count
            texts = self.texts[self.fresh : self.fresh + count]
        else:
            texts = self.texts[:count]
        if len(texts) != count or (not to_promote and count > self.fresh):
            raise ValueError(f"{count} commands but not enough things left")
        return texts


def system(name: str, env: dict[str, str], db: Path | str) -> Process:
    """ "bot", "bare" (Bolt's defaults, the baseline), "strict" (bare Bolt answering as its
    listener returns, as the bot does) or "exchanges" (bare Bolt making a promotion's HTTP
    calls after each ack, with the bot's clients: bench/bare_bolt.py)."""
    env = {**env, "PROMOTE_BOT_DB": str(db)}
    if name == "bot":
        return Process([sys.executable, "-m", "bot", "serve"], env)
    if name == "strict":
        env["BENCH_BEFORE_RESPONSE"] = "1"
    if name == "exchanges":
        env["BENCH_EXCHANGES"] = "1"
    return Process([sys.executable, "-m", "bench.bare_bolt"], env)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def approve(bot: Process, opened: dict, concurrency: int, gap: float | None = None) -> dict:
    """Click Approve on each request `opened` (open_requests' answer), as the approver, from
    `concurrency` senders at once; the load generator's output."""
    job = {
        "url": bot.url,
        "secret": SECRET,
        "kind": "click",
        **opened,
        "user": APPROVER,
        "concurrency": concurrency,
    }
    return await load({**job, "gap": gap} if gap is not None else job)


async def open_requests(bot: Process, fakes: Fakes, things: Things, count: int) -> dict:
    """Open `count` pending requests, each for its own thing; return their ids and the ts of
    their release messages (what a click on each carries), as a click job's "ids" and "ts"."""
    since = time.time()
    db = bot.db
    texts = things.take(db, count, to_promote=True)
    [(before,)] = db.run("SELECT COALESCE(MAX(id), 0) FROM requests")
    await load(
        {
            "url": bot.url,
            "secret": SECRET,
            "kind": "command",
            "texts": texts,
            "user": REQUESTER,
            "concurrency": min(count, 32),
        }
    )
    await fakes.wait("posts", count, since)
    deadline = time.monotonic() + 30
    while True:  # the ts is stored once the post's answer is back
        rows = db.run(
            "SELECT id, message_ts FROM requests WHERE id > ? AND message_ts IS NOT NULL"
            " ORDER BY id",
            [before],
        )
        if len(rows) >= count or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    if len(rows) != count:
        raise RuntimeError(f"{count} requests opened, {len(rows)} with a release message")
    return {"ids": [r[0] for r in rows], "ts": [r[1] for r in rows]}
