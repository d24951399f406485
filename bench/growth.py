"""A year of history against none: `python -m bench.growth [--quick] [--backend sqlite|postgres]`.

Two bots with the same config and load, one on a database holding a year of use (bench/grow.py:
100,000 ended requests, 1,000,000 audit entries), one on an empty one, on SQLite and then on
PostgreSQL (a server of its own, from the `pgserver` package). They start alternately (start to
the first answer read from the database, and the memory then), then are measured alternately in
rounds, in the same run: the ack of a command and of a click (each doing its full work after:
preview, release message, promotion, thread reply), and the answers people wait for (`status`,
`history`, `pending`, `locks`, the App Home), from the request sent to the answer at the fake
Slack. Each figure is reported as a ratio, a year over none. Run by bench/run.py too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.grow import grow
from bench.harness import (
    APPROVER,
    CONFIG,
    PROJECTS,
    REQUESTER,
    ROOT,
    SECRET,
    Fakes,
    Process,
    Things,
    approve,
    bench_env,
    load,
    open_requests,
    pct,
    system,
)
from bot.sandbox.slack_requests import SlackSender

YEAR = (100_000, 1_000_000)  # ended requests, audit entries
TARGET_RATIO = 1.25
TARGET_RSS_MB = 10.0
# What people wait for, asked of both bots alike: `{oldest}`/`{newest}` are each bot's own.
ANSWERS = {
    "status of the oldest request": "status {oldest}",
    "status of the newest request": "status {newest}",
    "history": "history",
    "history of a target": "history znyx:b2:staging",
    "history of a pattern": "history znyx:*:staging",
    "pending": "pending",
    "locks": "locks",
}


@dataclass
class Scale:
    rounds: int = 8  # each phase of a round runs on one bot then the other, in turn
    commands: int = 50  # acks of commands per round and bot
    clicks: int = 15  # acks of Approve clicks per round and bot, each a promotion
    asks: int = 4  # of each answer per round and bot
    concurrency: int = 4
    starts: int = 5

    @classmethod
    def quick(cls) -> Scale:
        return cls(rounds=2, commands=40, clicks=10, asks=3, starts=1)


@dataclass
class Bot:
    name: str  # "a year", "none"
    db: Path | str
    proc: Process | None = None
    # Per measure, the samples of each round (a round's figure is paired with the other bot's
    # of the same round, taken seconds apart, for the spread).
    rounds: dict[str, list[list[float]]] = field(default_factory=dict)
    starts: list[float] = field(default_factory=list)
    rss: list[float] = field(default_factory=list)


async def _answered(
    bot: Process, fakes: Fakes, job: dict[str, Any], what: str = "responses"
) -> list[float]:
    """Send `job` one request at a time; seconds from each request to its answer at the fake
    Slack (its response URL's post; for an App Home, its views.publish)."""
    since = time.time()
    out = await load(
        {
            "url": bot.url,
            "secret": SECRET,
            "concurrency": 1,
            "gap": 0.02,
            "response_base": fakes.urls["slack"],
            **job,
        }
    )
    count = len(out["sent"])
    if what == "homes":
        shown = await fakes.wait("homes", count, since)
        return [a - s for a, s in zip(shown, sorted(out["sent"]), strict=True)]
    deadline = time.monotonic() + 60
    while True:
        seen = (await fakes.stats(since))["responses"]
        if all(k in seen for k in out["keys"]) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    missing = [k for k in out["keys"] if k not in seen]
    if missing:
        raise RuntimeError(f"{len(missing)} answers never came: {job.get('texts', [''])[0]}")
    return [seen[k] - s for k, s in zip(out["keys"], out["sent"], strict=True)]


async def _start(bot: Bot, env: dict[str, str], fakes: Fakes) -> Process:
    """Start `bot`; record the seconds from spawn to its first answer read from the database
    (`/promote pending`, answered after the ack, at the fake Slack), and its memory a second
    later."""
    proc = system("bot", env, bot.db)
    spawned = time.perf_counter()
    await proc.start()
    sender = SlackSender(proc.url, SECRET, fakes.urls["slack"])
    body = sender.command_body("pending", REQUESTER)
    key = body.rsplit("response%2F", 1)[1].split("&", 1)[0]
    since = time.time()
    await sender.post(body)
    await sender.aclose()
    while key not in (await fakes.stats(since))["responses"]:  # noqa: ASYNC110 (another process)
        await asyncio.sleep(0.005)
    bot.starts.append(time.perf_counter() - spawned)
    await asyncio.sleep(1.0)
    bot.rss.append(proc.rss_mb())
    return proc


async def _round(bots: list[Bot], fakes: Fakes, things: Things, scale: Scale) -> None:
    """One round of everything measured: each phase on one bot, then on the next, so the two
    figures of a phase are taken seconds apart (this machine's speed drifts)."""

    def record(bot: Bot, measure: str, samples: list[float]) -> None:
        bot.rounds.setdefault(measure, []).append(samples)

    for bot in bots:
        proc = bot.proc
        assert proc is not None
        since = time.time()
        out = await load(
            {
                "url": proc.url,
                "secret": SECRET,
                "kind": "command",
                "texts": things.take(proc.db, scale.commands),
                "user": REQUESTER,
                "concurrency": scale.concurrency,
            }
        )
        record(bot, "command ack", out["latencies"])
        await fakes.wait("posts", scale.commands, since)
    # The answers, while the round's requests are open (pending lists them, as the Home does).
    for name, text in ANSWERS.items():
        for bot in bots:
            assert bot.proc is not None
            [(oldest, newest)] = bot.proc.db.run("SELECT MIN(id), MAX(id) FROM requests")
            texts = [text.format(oldest=oldest, newest=newest)] * scale.asks
            job = {"kind": "command", "texts": texts, "user": REQUESTER}
            record(bot, name, await _answered(bot.proc, fakes, job))
    for bot in bots:
        assert bot.proc is not None
        job = {"kind": "home", "users": [APPROVER] * scale.asks}
        record(bot, "the App Home", await _answered(bot.proc, fakes, job, "homes"))
    for bot in bots:
        proc = bot.proc
        assert proc is not None
        opened = await open_requests(proc, fakes, things, scale.clicks)
        since = time.time()
        out = await approve(proc, opened, scale.concurrency)
        record(bot, "click ack", out["latencies"])
        await fakes.wait("threads", scale.clicks, since, under=opened["ts"])


@contextlib.asynccontextmanager
async def postgres_server(workdir: Path) -> AsyncIterator[str]:
    """A PostgreSQL server of the benchmark's own (pgserver's binaries); its socket folder."""
    from psycopg.conninfo import conninfo_to_dict

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

        server = pgserver.get_server(workdir / "pg", cleanup_mode="stop")
    try:
        yield str(conninfo_to_dict(server.get_uri())["host"])
    finally:
        server.cleanup()


def _new_database(socket: str, name: str) -> str:
    import psycopg

    with psycopg.connect(f"postgresql://postgres@/postgres?host={socket}", autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {name}")
        c.execute(f"CREATE DATABASE {name}")
    return f"postgresql://postgres@/{name}?host={socket}"


async def measure(
    backend: str,
    fakes: Fakes,
    env: dict[str, str],
    workdir: Path,
    things: Things,
    scale: Scale,
    socket: str | None = None,
) -> tuple[list[Row], dict[str, float], str]:
    """Rows (measure, a year, none, ratio, spread), the figures the targets read, a note."""
    if backend == "postgres":
        assert socket is not None
        year_db: Path | str = _new_database(socket, "bench_year")
        none_db: Path | str = _new_database(socket, "bench_none")
    else:  # new files, in the run's own folder
        year_db, none_db = workdir / "year.db", workdir / "none.db"
    seeded = await asyncio.to_thread(grow, year_db, *YEAR)
    bots = [Bot("a year", year_db), Bot("none", none_db)]
    for i in range(scale.starts):
        for bot in bots if i % 2 == 0 else bots[::-1]:
            proc = await _start(bot, env, fakes)
            await proc.stop()
    for bot in bots:
        bot.proc = await _start(bot, env, fakes)
    try:
        for i in range(scale.rounds):
            await _round(bots if i % 2 == 0 else bots[::-1], fakes, things, scale)
    finally:
        for bot in bots:
            if bot.proc is not None:
                await bot.proc.stop()
    return _rows(backend, bots, seeded)


# measure, a year, none, their ratio, the median (low–high) of the rounds' paired ratios
Row = tuple[str, str, str, str, str]


def _rows(backend: str, bots: list[Bot], seeded: float) -> tuple[list[Row], dict[str, float], str]:
    year, none = bots
    label = "SQLite" if backend == "sqlite" else "PostgreSQL"
    rows: list[Row] = []
    ratios: dict[str, float] = {}

    def row(name: str, a: float, b: float, fmt: str, paired: list[float]) -> None:
        """`paired`: the ratio of each round (or start), the two figures taken seconds apart.
        Their median is what the target reads: a burst of another process's work on this
        shared machine falls on one bot's phase, and moves one round, not the median."""
        ratio = a / b if b else float("nan")
        middle = statistics.median(paired) if paired else ratio
        low, high = (min(paired), max(paired)) if paired else (ratio, ratio)
        rows.append(
            (
                name,
                f"{a:{fmt}}",
                f"{b:{fmt}}",
                f"{ratio:.2f}",
                f"{middle:.2f} ({low:.2f}–{high:.2f})",
            )
        )
        ratios[name] = middle

    starts = statistics.median(year.starts), statistics.median(none.starts)
    pairs = [a / b for a, b in zip(year.starts, none.starts, strict=True)]
    row("start to the first answer from the database (s)", *starts, ".3f", pairs)
    for measure in year.rounds:
        for q in (0.5, 0.99) if measure.endswith("ack") else (0.5,):
            a, b = (pct([x for r in bot.rounds[measure] for x in r], q) * 1000 for bot in bots)
            per_round = [
                pct(x, q) / pct(y, q)
                for x, y in zip(year.rounds[measure], none.rounds[measure], strict=True)
            ]
            what = "ack" if measure.endswith("ack") else "answered"
            name = measure.removesuffix(" ack")
            row(f"{name}: {what} p{round(q * 100)} (ms)", a, b, ".2f", per_round)
    rss = statistics.median(year.rss) - statistics.median(none.rss)
    rows.append(
        (
            "RSS after start-up (MB)",
            f"{statistics.median(year.rss):.1f}",
            f"{statistics.median(none.rss):.1f}",
            f"{rss:+.1f} MB",
            "",
        )
    )
    results = {
        f"growth ratio, worst ({label})": max(ratios.values()),
        f"RSS growth after start-up ({label}, MB)": rss,
    }
    worst = max(ratios, key=lambda k: ratios[k])
    note = (
        f"{label}: the database of a year ({YEAR[0]:,} ended requests, {YEAR[1]:,} audit entries)"
        f" made in {seeded:.0f} s; the worst ratio is {worst!r} ({ratios[worst]:.2f})."
    )
    return rows, results, note


def markdown(sections: Mapping[str, list[Row]], notes: list[str]) -> str:
    out = [
        "\n## A year of history against none (bench/growth.py)\n",
        "Two bots with the same config and load, one on a database holding a year of use"
        f" ({YEAR[0]:,} ended requests, {YEAR[1]:,} audit entries, made by bulk SQL:"
        " bench/grow.py), one on an empty one, started and measured alternately in the same"
        " run. Acks are of commands and Approve clicks that each do their full work after;"
        " answers are from the request sent to the answer at the fake Slack (its response URL,"
        " or `views.publish` for the App Home); start-up is from spawn to the first answer read"
        " from the database (`pending`), RSS a second later. The a-year and none columns pool"
        " every round's samples; each round's phases run on one bot then the other seconds"
        " apart, and the last column is the median (and range) of those paired rounds' ratios,"
        " which the targets read: a burst of another process's work on this shared machine"
        " lands in one bot's phase and moves that round, not the median. Target: each ratio"
        f" ≤ {TARGET_RATIO}, RSS + ≤ {TARGET_RSS_MB:.0f} MB.",
    ]
    for label, rows in sections.items():
        title = "SQLite" if label == "sqlite" else "PostgreSQL"
        out += [
            f"\n### {title}\n",
            "| measure | a year | none | a year / none | rounds' ratios: median (low–high) |",
            "|---|---|---|---|---|",
        ]
        out += ["| " + " | ".join(r) + " |" for r in rows]
    out += ["", *[f"- {note}" for note in notes]]
    return "\n".join(out) + "\n"


async def main(quick: bool, backends: list[str]) -> None:
    """Standalone: the fakes, then the backends asked for; prints the tables."""
    fakes_proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.fakes", str(PROJECTS), stdout=asyncio.subprocess.PIPE, cwd=ROOT
    )
    assert fakes_proc.stdout is not None
    urls = json.loads(await fakes_proc.stdout.readline())
    fakes = Fakes(urls, httpx.AsyncClient(timeout=30))
    workdir = Path(tempfile.mkdtemp(prefix="promote-bot-growth-"))
    (workdir / "bench.toml").write_text(CONFIG)
    env = bench_env(urls, workdir / "bench.toml")
    scale = Scale.quick() if quick else Scale()
    things = Things(PROJECTS)
    sections, notes = {}, []
    try:
        for backend in backends:
            async with contextlib.AsyncExitStack() as stack:
                socket = None
                if backend == "postgres":
                    socket = await stack.enter_async_context(postgres_server(workdir))
                rows, results, note = await measure(
                    backend, fakes, env, workdir, things, scale, socket
                )
            sections[backend] = rows
            notes.append(note)
            print(json.dumps(results))
    finally:
        fakes_proc.terminate()
        await fakes_proc.wait()
        await fakes.http.aclose()
    print(markdown(sections, notes))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and requests")
    parser.add_argument("--backend", choices=("sqlite", "postgres"), action="append")
    args = parser.parse_args()
    asyncio.run(main(args.quick, args.backend or ["sqlite", "postgres"]))
