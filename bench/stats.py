"""What the releases add up to, at scale: `python -m bench.stats [--entries N] [--postgres]`.

Seeds a database with N audit entries (a million by default) and the requests and approvals
they tell of, with bulk SQL (a recursive CTE in SQLite, generate_series in PostgreSQL: seconds,
not an hour of the bot's own writes), then measures, on that database:

- `/promote stats` end to end: a signed slash command to the bot (Bolt, the inbox, the SQL in a
  worker thread) until its answer reaches the fake Slack's response_url (target: 1 s), and its
  ack;
- the figures alone (30 days, the App Home's 7), and the totals a /metrics scrape computes;
- `promote-bot audit` streaming the whole log to /dev/null: time, and its peak memory.

Prints one table. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bot.core import stats
from bot.core.drift import MOVED
from bot.core.model import kinds_for, providers_for
from bot.core.truth import OUTSIDE
from bot.providers.whop import WhopPromote
from bot.providers.znyx import ZnyxPromote
from bot.store import AnyStore, open_any

ROOT = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
YEARS = 2  # the history spans this long, up to NOW
PER_REQUEST = 5  # audit entries per request: requested, approved, executing, outcome, one more
# (for one in 10 its preview moved; for one in 50 a change outside the bot at its target)
TARGET_SECONDS = 1.0  # `/promote stats` answered by response_url within this
SECRET = "bench-signing-secret"
USER = "U_ALICE"
PROJECTS = [f"p{i}" for i in range(8)]
APPS = [f"app{i}" for i in range(4)]
CONFIG = (
    '[roles]\nrelease-manager = ["bundle:publish", "developer:manage_builds"]\n'
    f'[members]\n{USER} = ["release-manager"]\n'
    '[znyx]\norg = "org-bench"\n[znyx.projects]\n'
    + "".join(f'{p} = "proj-{p}"\n' for p in PROJECTS)
    + "[whop.apps]\n"
    + "".join(f'{a} = "app_{a}"\n' for a in APPS)
)


def _actions() -> list[tuple[str, str]]:
    """(target, action JSON) of every target the history spreads over."""
    out = []
    for p in PROJECTS:
        for source in ("dev", "staging"):
            a = ZnyxPromote(
                org_id="org-bench", project=p, project_id=f"proj-{p}", source_env=source
            )
            out.append((a.target, a.model_dump_json()))
    for app in APPS:
        w = WhopPromote(app=app, app_id=f"app_{app}", build_id="apbu_1", platform="ios")
        out.append((w.target, w.model_dump_json()))
    return out


def _states_sql(i: str) -> str:
    """82% succeed, 6% fail, 2% unknown, 5% rejected, 3% cancelled, 2% expire."""
    r = f"mod({i}, 100)"
    return (
        f"CASE WHEN {r} < 82 THEN 'succeeded' WHEN {r} < 88 THEN 'failed'"
        f" WHEN {r} < 90 THEN 'unknown' WHEN {r} < 95 THEN 'rejected'"
        f" WHEN {r} < 98 THEN 'cancelled' ELSE 'expired' END"
    )


def seed_sqlite(path: Path, entries: int) -> int:
    """Bulk-insert the history into a new SQLite database; how many requests."""
    import sqlite3

    open_any(path).close()  # the schema, as the bot makes it
    requests = entries // PER_REQUEST
    step = YEARS * 365 * 86400 / requests
    start = (NOW - timedelta(days=YEARS * 365)).timestamp()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = OFF")
    actions = _actions()
    conn.execute("CREATE TEMP TABLE t (n INTEGER PRIMARY KEY, target TEXT, action TEXT)")
    conn.executemany("INSERT INTO t VALUES (?, ?, ?)", [(n, *a) for n, a in enumerate(actions)])

    def moment(seconds: str) -> str:
        return f"strftime('%Y-%m-%dT%H:%M:%S', {seconds}, 'unixepoch') || '+00:00'"

    created = f"{start} + i * {step}"
    lead = "(60 + (i * 7919) % 14400)"  # a minute to four hours
    with conn:
        conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
            " INSERT INTO requests (target, action, requester, channel, state, created_at,"
            " updated_at, expires_at, emergency, msg_version, msg_shown, thread_posted)"
            f" SELECT t.target, t.action, '{USER}', 'C_RELEASES', {_states_sql('i')},"
            f" {moment(created)}, {moment(created + ' + ' + lead)},"
            f" {moment(created + ' + 86400')}, CASE WHEN i % 97 = 0 THEN 'incident' END, 1, 1, 1"
            f" FROM n JOIN t ON t.n = i % {len(actions)}",
            [requests],
        )
        conn.execute(
            "INSERT INTO approvals (request_id, user, at) SELECT id, 'U_BOB',"
            " strftime('%Y-%m-%dT%H:%M:%S', strftime('%s', created_at)"
            " + 30 + (id * 31) % 1800, 'unixepoch') || '+00:00'"
            " FROM requests WHERE state NOT IN ('rejected', 'cancelled', 'expired')"
        )
        # A rollback of every 40th success, half an hour after it.
        conn.execute(
            "INSERT INTO requests (target, action, requester, channel, state, created_at,"
            " updated_at, expires_at, rolls_back, msg_version, msg_shown, thread_posted)"
            " SELECT target, action, requester, channel, 'succeeded', updated_at,"
            " strftime('%Y-%m-%dT%H:%M:%S', strftime('%s', updated_at) + 1800, 'unixepoch')"
            " || '+00:00', expires_at, id, 1, 1, 1"
            " FROM requests WHERE state = 'succeeded' AND id % 40 = 0"
        )
        conn.execute(
            "WITH k(e) AS (VALUES ('requested'), ('approved'), ('executing'), ('outcome'),"
            " ('noted'))"
            " INSERT INTO audit (at, request_id, actor, event, target, detail)"
            f" SELECT r.updated_at, {_noted('r.id % 50')}, 'U_ALICE', CASE k.e WHEN 'outcome'"
            f" THEN r.state WHEN 'noted' THEN {_beside('r.id % 10', 'r.id % 50')} ELSE k.e END,"
            " r.target, 'seeded' FROM requests r, k ORDER BY r.id"
        )
    count = conn.execute("SELECT COUNT(*) FROM requests").fetchone()[0]
    conn.execute("ANALYZE")
    conn.close()
    return int(count)


def _beside(tenth: str, fiftieth: str) -> str:
    """SQL: the fifth entry of a request is, for one in 50, a change outside the bot at its
    target (no request), for one in 10 its preview moved (drift), else a note."""
    return (
        f"CASE WHEN {fiftieth} = 1 THEN '{OUTSIDE}' WHEN {tenth} = 0 THEN '{MOVED}'"
        " ELSE 'noted' END"
    )


def _noted(fiftieth: str) -> str:
    """SQL: the request an entry is of (none for a change outside the bot)."""
    return f"CASE WHEN k.e = 'noted' AND {fiftieth} = 1 THEN NULL ELSE r.id END"


def seed_postgres(url: str, entries: int) -> int:
    """The same history, in PostgreSQL, with generate_series."""
    import psycopg

    open_any(url).close()
    requests = entries // PER_REQUEST
    step = YEARS * 365 * 86400 / requests
    start = NOW - timedelta(days=YEARS * 365)
    actions = _actions()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TEMP TABLE t (n INTEGER PRIMARY KEY, target TEXT, action TEXT)")
        with conn.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO t VALUES (%s, %s, %s)", [(n, *a) for n, a in enumerate(actions)]
            )
        created = f"%(start)s::timestamptz + i * interval '{step} seconds'"
        with conn.transaction():
            conn.execute(
                "INSERT INTO requests (target, action, requester, channel, state, created_at,"
                " updated_at, expires_at, emergency)"
                f" SELECT t.target, t.action, '{USER}', 'C_RELEASES', {_states_sql('i')},"
                f" {created}, {created} + (60 + mod(i * 7919, 14400)) * interval '1 second',"
                f" {created} + interval '1 day', CASE WHEN mod(i, 97) = 0 THEN 'incident' END"
                " FROM generate_series(1, %(requests)s) AS i"
                f" JOIN t ON t.n = mod(i, {len(actions)})",
                {"start": start, "requests": requests},
            )
            conn.execute(
                "INSERT INTO approvals (request_id, \"user\", at) SELECT id, 'U_BOB',"
                " created_at + (30 + mod(id * 31, 1800)) * interval '1 second' FROM requests"
                " WHERE state NOT IN ('rejected', 'cancelled', 'expired')"
            )
            conn.execute(
                "INSERT INTO requests (target, action, requester, channel, state, created_at,"
                " updated_at, expires_at, rolls_back) SELECT target, action, requester,"
                " channel, 'succeeded', updated_at, updated_at + interval '30 minutes',"
                " expires_at, id FROM requests WHERE state = 'succeeded' AND mod(id, 40) = 0"
            )
            conn.execute(
                "INSERT INTO audit (at, request_id, actor, event, target, detail)"
                f" SELECT r.updated_at, {_noted('mod(r.id, 50)')}, 'U_ALICE', CASE k.e"
                " WHEN 'outcome' THEN r.state WHEN 'noted' THEN"
                f" {_beside('mod(r.id, 10)', 'mod(r.id, 50)')} ELSE k.e END, r.target, 'seeded'"
                " FROM requests r,"
                " (VALUES ('requested'), ('approved'), ('executing'), ('outcome'), ('noted'))"
                " AS k(e) ORDER BY r.id"
            )
        conn.execute("ANALYZE")
        return int(conn.execute("SELECT COUNT(*) FROM requests").fetchone()[0])  # type: ignore[index]


def timed(call: Callable[[], Any], runs: int = 5) -> tuple[float, float]:
    """(first, median of the rest) in milliseconds."""
    times = []
    for _ in range(runs + 1):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return times[0], statistics.median(times[1:])


async def through_slack(db: str, tmp: Path, runs: int = 5) -> list[tuple[float, float]]:
    """(ack, answer) in ms of `/promote stats`, sent to the bot as Slack sends it."""
    from bot.cli import SLACK_PATH, start_slack_bot
    from bot.config import Settings
    from bot.sandbox.slack import FakeSlack
    from bot.sandbox.slack_requests import SlackSender
    from bot.transports.slack.app import web_app
    from bot.web import WebServer

    config = tmp / "promote-bot.toml"
    config.write_text(CONFIG)
    slack = FakeSlack()
    out = []
    async with WebServer(slack.app()) as slack_server:
        settings = Settings(
            slack_bot_token=slack.token,
            slack_signing_secret=SECRET,
            slack_api_url=f"{slack_server.url}/api/",
            promote_bot_config=config,
            promote_bot_db=db,
        )
        providers = {"znyx_token": "bench", "whop_api_key": "bench"}
        bot = await start_slack_bot(settings, providers, clock=lambda: NOW)
        async with WebServer(web_app(bot.app, SLACK_PATH)) as server:
            sender = SlackSender(server.url, SECRET, slack_server.url)
            try:
                for _ in range(runs + 1):
                    before = len(slack.calls_to("response_url"))

                    def answered_now(s: FakeSlack, before: int = before) -> bool:
                        return len(s.calls_to("response_url")) > before

                    started = time.perf_counter()
                    response = await sender.command("stats", USER)
                    acked = time.perf_counter()
                    assert response.status_code == 200 and response.text == "", response.text
                    await slack.wait_for(answered_now, within=30)
                    answered = time.perf_counter()
                    said = slack.calls_to("response_url")[-1].args.get("text", "")
                    assert "What the releases add up to" in said, said[:200]
                    out.append(((acked - started) * 1000, (answered - started) * 1000))
            finally:
                await sender.aclose()
                await bot.workflow.drain(5)  # the work after the last answer, done
                await bot.aclose()
    return out


def export_run(db: str) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of `promote-bot audit` writing the whole log to /dev/null.
    The peak is the process's own high-water mark (VmHWM, reset by exec), not ru_maxrss, which
    on Linux carries over the size of the process it was forked from."""
    env = {**os.environ, "PROMOTE_BOT_DB": db, "PYTHONPATH": str(ROOT)}
    script = (
        "import sys\n"
        "from bot.cli import main\n"
        "code = main(['audit'])\n"
        "sys.stdout.flush()\n"
        "peak = [l for l in open('/proc/self/status') if l.startswith('VmHWM:')][0]\n"
        "print(peak.split()[1], file=sys.stderr)\n"
        "sys.exit(code)\n"
    )
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=True,
    )
    seconds = time.perf_counter() - started
    peak_kb = int(result.stderr.strip().splitlines()[-1])
    return seconds, peak_kb / 1024


@contextlib.contextmanager
def _postgres(tmp: Path) -> Iterator[str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

        server = pgserver.get_server(tmp / "pg", cleanup_mode="stop")
    try:
        import psycopg
        from psycopg.conninfo import conninfo_to_dict

        with psycopg.connect(server.get_uri(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE promote_bot_bench")
        socket = conninfo_to_dict(server.get_uri())["host"]
        yield f"postgresql://postgres@/promote_bot_bench?host={socket}"
    finally:
        server.cleanup()


def run(db: str, entries: int, tmp: Path, seed: Callable[[], int]) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    started = time.perf_counter()
    requests = seed()
    rows.append(("seeded (s)", f"{time.perf_counter() - started:.1f}"))
    store: AnyStore = open_any(db)
    audit = sum(1 for _ in store.audit_entries(since=NOW - timedelta(days=1)))
    rows.append(("requests / audit entries", f"{requests:,} / ≈{entries:,}"))
    rows.append(("audit entries of the last day", f"{audit:,}"))
    kinds = kinds_for({"bundle:publish", "developer:manage_builds"})
    providers = providers_for(kinds)
    for days in (stats.DEFAULT_DAYS, stats.HOME_DAYS):
        w = stats.window(NOW, days)

        def figures(w: stats.Window = w, again: bool = False) -> object:
            if not again:
                store.reader.counted.clear()  # counted by the database each time
            return store.target_figures(w.since, w.until, kinds=kinds, providers=providers)

        first, median = timed(figures)
        rows.append((f"figures, {days} days (ms): first / median", f"{first:.0f} / {median:.0f}"))
        _, again = timed(lambda w=w: figures(w, again=True))
        rows.append((f"figures, {days} days, nothing changed since (ms): median", f"{again:.1f}"))
    first, median = timed(lambda: store.delivery_totals(stats.BOUNDS), runs=3)
    rows.append(("/metrics totals, all time (ms): first / median", f"{first:.0f} / {median:.0f}"))
    store.close()
    answers = asyncio.run(through_slack(db, tmp))
    acks = sorted(a for a, _ in answers[1:])
    answered = sorted(b for _, b in answers[1:])
    rows.append(("/promote stats ack (ms): median / max", f"{statistics.median(acks):.1f} / "
                 f"{acks[-1]:.1f}"))  # fmt: skip
    rows.append(
        (
            f"/promote stats → response_url (ms): first / median / max"
            f" (target {TARGET_SECONDS:g} s)",
            f"{answers[0][1]:.0f} / {statistics.median(answered):.0f} / {answered[-1]:.0f}",
        )
    )
    seconds, peak = export_run(db)
    rows.append(("promote-bot audit, whole log to /dev/null (s)", f"{seconds:.1f}"))
    rows.append(("promote-bot audit peak RSS (MB)", f"{peak:.0f}"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=1_000_000, help="audit entries to seed")
    parser.add_argument("--postgres", action="store_true", help="also on PostgreSQL (pgserver)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="promote-bot-stats-") as folder:
        tmp = Path(folder)
        path = tmp / "bench.db"
        n = args.entries
        results = {"SQLite": run(str(path), n, tmp, lambda: seed_sqlite(path, n))}
        if args.postgres:
            with _postgres(tmp) as url:
                results["PostgreSQL"] = run(url, n, tmp, lambda: seed_postgres(url, n))
    print(f"\nWhat the releases add up to, at {args.entries:,} audit entries")
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} cores\n")
    names = list(results)
    print("| measure | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for i, (label, _) in enumerate(results[names[0]]):
        print(f"| {label} | " + " | ".join(results[n][i][1] for n in names) + " |")


if __name__ == "__main__":
    main()
