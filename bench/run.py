"""Benchmarks: `python -m bench.run [--quick]`. Prints one table and rewrites BENCHMARKS.md.

Every system under test is its own process in HTTP mode on loopback: `promote-bot serve` and,
as the baseline, a bare Bolt AsyncApp whose only listener acks. The fakes (Slack Web API, Znyx,
App Store Connect) run in another process, and the load generator in a third, so none of them
shares an event loop with what is measured. Bot and baseline are measured alternately, in the
same run, and reported as ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import json
import os
import platform
import re
import signal
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

from bench import growth
from bench.harness import (
    APPROVER,
    CONFIG,
    PROJECTS,
    REQUESTER,
    ROOT,
    ROUNDS,
    SECRET,
    Fakes,
    Process,
    Things,
    approve,
    bench_env,
    cpu_seconds,
    load,
    open_requests,
    pct,
    system,
)
from bot.providers.appstore import AppStoreExpire, AppStoreProvider, AppStoreToken
from bot.providers.jwt_auth import load_private_key
from bot.sandbox import world

TARGETS = {
    "ack p50 ratio": 1.5,
    "ack p99 ratio": 2.0,
    "ack p50 ratio, same Bolt setting": 1.5,
    "ack p99 ratio, same Bolt setting": 2.0,
    "slowest ack @ c=128 (s)": 1.0,
    "release p50 − preview (ms)": 30.0,
    "click → provider p50 (ms)": 20.0,
    "500 at once / one": 3.0,
    "500 at once / the fakes' own floor": 1.5,
    "bot CPU per full promotion / bare Bolt CPU per ack": 15.0,
    "start to ready (s)": 1.0,
    "idle RSS (MB)": 80.0,
    "App Store tokens signed": 1,
    "growth ratio, worst (SQLite)": growth.TARGET_RATIO,
    "growth ratio, worst (PostgreSQL)": growth.TARGET_RATIO,
    "RSS growth after start-up (SQLite, MB)": growth.TARGET_RSS_MB,
    "RSS growth after start-up (PostgreSQL, MB)": growth.TARGET_RSS_MB,
}


async def main(
    quick: bool, profile: bool, workers: int | None = None, *, growing: bool = True
) -> None:
    scale = 0.2 if quick else 1.0
    fakes_proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.fakes",
        str(PROJECTS),
        stdout=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    assert fakes_proc.stdout is not None
    urls = json.loads(await fakes_proc.stdout.readline())
    fakes = Fakes(urls, httpx.AsyncClient(timeout=30))
    workdir = Path(tempfile.mkdtemp(prefix="promote-bot-bench-"))
    (workdir / "bench.toml").write_text(CONFIG)
    env = bench_env(urls, workdir / "bench.toml", workers)
    things = Things(PROJECTS)
    results: dict[str, float] = {}
    profile_md = ""
    rows: list[tuple[str, str, str, str]] = []
    growth_md = ""
    try:
        # 1. start to ready and idle RSS, bot and baseline alternately, with their modules
        # compiled as an install (and the Docker image) has them: an editable checkout under
        # PYTHONDONTWRITEBYTECODE=1 would otherwise recompile the bot on every start.
        for folder in ("bot", "bench"):
            compileall.compile_dir(ROOT / folder, quiet=1)
        starts: dict[str, list[float]] = {"bot": [], "bare": []}
        rss: dict[str, float] = {}
        for i in range(3):
            for name in ("bot", "bare"):
                proc = system(name, env, workdir / f"start{i}.db")
                starts[name].append(await proc.start())
                await asyncio.sleep(1.0)
                rss[name] = proc.rss_mb()
                await proc.stop()
        bot_start, bare_start = statistics.median(starts["bot"]), statistics.median(starts["bare"])
        rows.append(
            (
                "start to ready (s)",
                f"{bot_start:.3f}",
                f"{bare_start:.3f}",
                f"{bot_start / bare_start:.2f}",
            )
        )
        rows.append(
            (
                "idle RSS (MB)",
                f"{rss['bot']:.1f}",
                f"{rss['bare']:.1f}",
                f"{rss['bot'] / rss['bare']:.2f}",
            )
        )
        results["start to ready (s)"], results["idle RSS (MB)"] = bot_start, rss["bot"]

        bot = system("bot", env, workdir / "bot.db")
        bare = system("bare", env, workdir / "bare.db")
        strict = system("strict", env, workdir / "strict.db")
        await bot.start()
        await bare.start()
        await strict.start()
        db = bot.db

        # 2. slash-command ack latency and throughput at concurrency 1, 32, 128
        worst = dict.fromkeys(
            (
                "ack p50 ratio",
                "ack p99 ratio",
                "ack p50 ratio, same Bolt setting",
                "ack p99 ratio, same Bolt setting",
                "slowest ack @ c=128 (s)",
            ),
            0.0,
        )
        bare_cpu = [0.0, 0]  # CPU seconds bare Bolt spent acking, and its acks
        for concurrency, count in ((1, 100), (32, 800), (128, 800)):
            count = max(int(count * scale), concurrency * 2)
            systems = {"bot": bot, "bare": bare, "strict": strict}
            lat: dict[str, list[float]] = {name: [] for name in systems}
            rate: dict[str, list[float]] = {name: [] for name in systems}
            share: dict[str, list[float]] = {name: [] for name in systems}
            drained: list[float] = []
            for _ in range(ROUNDS):
                for name, proc in systems.items():
                    spying = profile and name == "bot" and concurrency == 128
                    spy = await _py_spy(bot, workdir / "ack.txt") if spying else None
                    since = time.time()
                    job = {
                        "url": proc.url,
                        "secret": SECRET,
                        "kind": "command",
                        "texts": things.take(db, count),
                        "user": REQUESTER,
                        "concurrency": concurrency,
                    }
                    assert proc.proc is not None
                    cpu_at = cpu_seconds(proc.proc.pid)
                    out = await load(job)
                    if name == "bare":
                        bare_cpu[0] += cpu_seconds(proc.proc.pid) - cpu_at
                        bare_cpu[1] += count
                    lat[name] += out["latencies"]
                    rate[name].append(count / out["wall"])
                    share[name].append(out["cpu"] / out["wall"])
                    if name == "bot":  # its work after the ack finishes before the baseline runs
                        posts = await fakes.wait("posts", count, since)
                        drained.append(posts[-1] - since)
                    if spy is not None:
                        spy.send_signal(signal.SIGINT)
                        await spy.wait()
            p50 = {n: pct(v, 0.5) * 1000 for n, v in lat.items()}
            p99 = {n: pct(v, 0.99) * 1000 for n, v in lat.items()}
            top = {n: max(v) * 1000 for n, v in lat.items()}
            rps = {n: statistics.mean(v) for n, v in rate.items()}
            cpu = {n: statistics.mean(v) * 100 for n, v in share.items()}
            for label, values, fmt in (
                ("p50 (ms)", p50, ".2f"),
                ("p99 (ms)", p99, ".2f"),
                ("max (ms)", top, ".1f"),
                ("req/s", rps, ".0f"),
                ("load generator CPU (% of a core)", cpu, ".0f"),
            ):
                ratio = values["bot"] / values["bare"]
                rows.append(
                    (
                        f"ack {label} @ c={concurrency}",
                        f"{values['bot']:{fmt}}",
                        f"{values['bare']:{fmt}}",
                        f"{ratio:.2f}",
                    )
                )
            for label, values in (("p50", p50), ("p99", p99)):
                rows.append(
                    (
                        f"ack {label} (ms) @ c={concurrency} against bare Bolt answering as "
                        "its listener returns",
                        f"{values['bot']:.2f}",
                        f"{values['strict']:.2f}",
                        f"{values['bot'] / values['strict']:.2f}",
                    )
                )
            rows.append(
                (
                    f"last release message of {count} @ c={concurrency} (s after start)",
                    f"{statistics.mean(drained):.2f}",
                    "",
                    "",
                )
            )
            if concurrency > 1:
                for key, values, base in (
                    ("ack p50 ratio", p50, "bare"),
                    ("ack p99 ratio", p99, "bare"),
                    ("ack p50 ratio, same Bolt setting", p50, "strict"),
                    ("ack p99 ratio, same Bolt setting", p99, "strict"),
                ):
                    worst[key] = max(worst[key], values["bot"] / values[base])
            if concurrency == 128:
                worst["slowest ack @ c=128 (s)"] = top["bot"] / 1000
        results.update(worst)
        if profile:
            profile_md += _profile_summary(
                workdir / "ack.txt",
                "the bot's ack rounds at concurrency 128",
                "it acked the commands and did the work after each ack",
            )
        await bare.stop()
        await strict.stop()

        # 3. command → release message posted, one at a time, against the provider's preview
        preview = await _preview_latency(urls, workdir / "bench.toml")
        singles = max(int(60 * scale), 20)
        since = time.time()
        out = await load(
            {
                "url": bot.url,
                "secret": SECRET,
                "kind": "command",
                "texts": things.take(db, singles),
                "user": REQUESTER,
                "concurrency": 1,
                "gap": 0.05,
            }
        )
        posted = await fakes.wait("posts", singles, since)
        released = [(p - t) * 1000 for p, t in zip(posted, sorted(out["sent"]), strict=True)]
        rows.append(("Znyx preview alone p50 (ms)", f"{preview:.2f}", "", ""))
        rows.append(("command → release message p50 (ms)", f"{pct(released, 0.5):.2f}", "", ""))
        rows.append(("command → release message p99 (ms)", f"{pct(released, 0.99):.2f}", "", ""))
        results["release p50 − preview (ms)"] = pct(released, 0.5) - preview

        # 4. approve click → promote call arriving at the fake provider, one at a time
        await fakes.control(promote_delay=0.0)
        clicks = max(int(100 * scale), 20)
        opened = await open_requests(bot, fakes, things, clicks)
        since = time.time()
        out = await approve(bot, opened, 1, gap=0.05)
        arrived = await fakes.wait("promotes", clicks, since)
        arrivals = [(a - t) * 1000 for a, t in zip(arrived, sorted(out["sent"]), strict=True)]
        await fakes.wait("threads", clicks, since, under=opened["ts"])
        rows.append(("click → provider p50 (ms)", f"{pct(arrivals, 0.5):.2f}", "", ""))
        rows.append(("click → provider p99 (ms)", f"{pct(arrivals, 0.99):.2f}", "", ""))
        results["click → provider p50 (ms)"] = pct(arrivals, 0.5)

        # 5. 500 approved promotions at once, the provider answering in 200 ms
        await fakes.control(promote_delay=0.2)
        singles_s = []
        for _ in range(3):
            opened = await open_requests(bot, fakes, things, 1)
            since = time.time()
            out = await approve(bot, opened, 1)
            [done] = await fakes.wait("threads", 1, since, under=opened["ts"])
            singles_s.append(done - out["sent"][0])
        one = statistics.median(singles_s)
        many = max(int(500 * scale), 50)
        assert bot.proc is not None
        cpu_opening, opening = cpu_seconds(bot.proc.pid), time.time()
        opened = await open_requests(bot, fakes, things, many)
        spy = await _py_spy(bot, workdir / "profile.txt") if profile else None
        cpu_before = cpu_seconds(bot.proc.pid), cpu_seconds(fakes_proc.pid)
        since = time.time()
        out = await approve(bot, opened, many)
        done_all = (await fakes.wait("threads", many, since, under=opened["ts"]))[-1]
        total = done_all - min(out["sent"])
        await asyncio.sleep(0.5)  # the release messages' last updates
        cpu_after = cpu_seconds(bot.proc.pid)
        bot_calls = (await fakes.stats(opening))["calls"]
        bot_cpu = (cpu_after - cpu_before[0]) / many * 1000
        full_cpu = (cpu_after - cpu_opening) / many * 1000
        fakes_cpu = (cpu_seconds(fakes_proc.pid) - cpu_before[1]) / many * 1000
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            await spy.wait()
            profile_md += _profile_summary(
                workdir / "profile.txt", "the promotions-at-once phase", "the promotions ran"
            )
        rows.append((f"{many} at once: total (s)", f"{total:.3f}", "", ""))
        rows.append(
            (f"{many} at once: slowest ack (ms)", f"{max(out['latencies']) * 1000:.1f}", "", "")
        )
        rows.append(("one promotion (s)", f"{one:.3f}", "", ""))
        rows.append((f"{many} at once / one", f"{total / one:.2f}", "", ""))
        rows.append((f"{many} at once: bot CPU per promotion (ms)", f"{bot_cpu:.1f}", "", ""))
        rows.append((f"{many} at once: fakes' CPU per promotion (ms)", f"{fakes_cpu:.1f}", "", ""))
        # The fakes answer on one event loop: the phase can't end before they have spent
        # their CPU on it, nor before one promotion's own time (the provider takes 200 ms).
        floor = max(many * fakes_cpu / 1000, one)
        rows.append((f"{many} at once: the fakes' own floor (s)", f"{floor:.3f}", "", ""))
        rows.append((f"{many} at once / the fakes' own floor", f"{total / floor:.2f}", "", ""))
        per_ack = bare_cpu[0] / max(bare_cpu[1], 1) * 1000
        rows.append(
            (
                "bot CPU per full promotion (ms: command, preview, release message, click,"
                " promotion, outcome)",
                f"{full_cpu:.2f}",
                f"{per_ack:.2f}",
                f"{full_cpu / per_ack:.1f}",
            )
        )
        results["500 at once / one"] = total / one
        results["500 at once / the fakes' own floor"] = total / floor
        results["bot CPU per full promotion / bare Bolt CPU per ack"] = full_cpu / per_ack
        await bot.stop()

        # 5b. the floor of that CPU with the bot's libraries: bare Bolt making the same HTTP
        # calls after each ack (bench/bare_bolt.py's EXCHANGES), the same loads
        await fakes.control(promote_delay=0.0)
        floor_cpu, floor_calls = await _exchanges_cpu(env, workdir, fakes, things.take(db, many))
        rows.append(
            (
                "outbound HTTP calls per promotion (Slack and Znyx; against the same exchanges"
                " from bare Bolt)",
                f"{sum(bot_calls.values()) / many:.2f}",
                f"{sum(floor_calls.values()) / many:.2f}",
                "",
            )
        )
        print("calls per promotion, bot:", _per(bot_calls, many), file=sys.stderr)
        print("calls per promotion, bare exchanges:", _per(floor_calls, many), file=sys.stderr)
        rows.append(
            (
                "the same HTTP exchanges from bare Bolt, CPU per promotion (ms; against bare"
                " Bolt's per ack)",
                f"{floor_cpu:.2f}",
                f"{per_ack:.2f}",
                f"{floor_cpu / per_ack:.1f}",
            )
        )
        rows.append(
            (
                "bot CPU per full promotion / the same HTTP exchanges from bare Bolt",
                f"{full_cpu / floor_cpu:.2f}",
                "",
                "",
            )
        )

        # 6. App Store Connect tokens signed during 1,000 provider calls
        token = AppStoreToken(world.ASC_ISSUER, world.ASC_KEY_ID, load_private_key(urls["asc_key"]))
        client = AppStoreProvider.create(urls["asc"], token)
        action = AppStoreExpire(app="ios", app_id=world.IOS_APP, build="153")
        for _ in range(1000):
            await client.build(action)
        await client.aclose()
        seen = (await fakes.stats())["asc_tokens"]
        rows.append(
            ("App Store tokens signed / seen in 1,000 calls", f"{token.signed} / {seen}", "", "")
        )
        results["App Store tokens signed"] = token.signed

    finally:
        fakes_proc.terminate()
        await fakes_proc.wait()
        await fakes.http.aclose()

    # 7. a year of history against none, on SQLite and on PostgreSQL (bench/growth.py), in a
    # process of its own with fakes of its own, as `python -m bench.growth` runs it
    if growing:
        growth_md = await _growth(quick, results)

    report(rows, results, quick, profile_md + growth_md, workers)


async def _growth(quick: bool, results: dict[str, float]) -> str:
    """Run bench/growth.py; its figures go into `results`, its tables are returned."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.growth",
        *(["--quick"] if quick else []),
        stdout=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    out, _ = await proc.communicate()
    if proc.returncode != 0:  # the figures above are kept: say so rather than lose them
        failed = f"`python -m bench.growth` failed (exit status {proc.returncode})."
        return f"\n## A year of history against none\n\n{failed}\n"
    lines = out.decode().splitlines()
    for line in lines:
        if line.startswith("{"):
            results.update(json.loads(line))
    return "\n".join(line for line in lines if not line.startswith("{")) + "\n"


async def _preview_latency(urls: dict[str, str], config: Path) -> float:
    """The provider's own preview latency (ms, median of 20), measured from this process."""
    from bot.cli import build_providers
    from bot.config import load_config
    from bot.core.commands import parse

    rules = load_config(config)
    providers = await build_providers(
        rules, {"znyx_api_url": urls["znyx"], "znyx_token": world.ZNYX_TOKEN}
    )
    action = parse("znyx guardrails dev", rules).action  # type: ignore[union-attr]
    took = []
    for _ in range(21):
        started = time.perf_counter()
        await providers["znyx"].preview(action)
        took.append((time.perf_counter() - started) * 1000)
    for provider in providers.values():
        await provider.aclose()
    return statistics.median(took[1:])


async def _py_spy(bot: Process, out: Path) -> asyncio.subprocess.Process:
    """Sample the bot's stacks (py-spy, from PyPI) until sent SIGINT."""
    assert bot.proc is not None
    spy = await asyncio.create_subprocess_exec(
        "py-spy",
        "record",
        "--pid",
        str(bot.proc.pid),
        "--rate",
        "250",
        "--format",
        "raw",
        "--output",
        str(out),
        "--nonblocking",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    await asyncio.sleep(1.0)  # py-spy attaches
    return spy


_GROUPS = (
    ("slack_bolt", "Bolt (request parsing, verification, listener runner)"),
    ("slack_sdk", "slack-sdk (Web API client)"),
    ("httpx_aiohttp", "httpx (provider client, on aiohttp's pool)"),
    ("aiohttp", "aiohttp (HTTP server, Slack and provider client I/O)"),
    ("httpcore", "httpx (provider client, on aiohttp's pool)"),
    ("httpx", "httpx (provider client, on aiohttp's pool)"),
    ("pydantic", "pydantic (models)"),
    ("sqlite", "SQLite (store)"),
    ("(bot/", "promote-bot's own code"),  # py-spy names files from the working folder
    ("/bot/", "promote-bot's own code"),
    ("asyncio", "asyncio (event loop, selectors)"),
    ("json", "json"),
)


def _profile_summary(raw: Path, phase: str, during: str) -> str:
    """Where the samples' leaf frames fall, by library, and the ten busiest functions."""
    if not raw.exists():
        return "\n(py-spy wrote no profile: is it installed, and may it attach?)\n"
    by_group: dict[str, int] = {}
    by_function: dict[str, int] = {}
    ours: dict[str, int] = {}  # samples under each of the bot's own functions (inclusive)
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        leaf = stack.split(";")[-1]
        group = next((g for key, g in _GROUPS if key in leaf), "other (interpreter, stdlib)")
        by_group[group] = by_group.get(group, 0) + n
        name = re.sub(r":\d+\)$", ")", leaf)
        by_function[name] = by_function.get(name, 0) + n
        frames = stack.split(";")
        for frame in {re.sub(r":\d+\)$", ")", f) for f in frames if re.search(r"[(/]bot/", f)}:
            ours[frame] = ours.get(frame, 0) + n
    if not total:
        return ""
    groups = "\n".join(
        f"| {g} | {n / total:.0%} |" for g, n in sorted(by_group.items(), key=lambda x: -x[1])
    )
    top = "\n".join(
        f"| `{f[:90]}` | {n / total:.1%} |"
        for f, n in sorted(by_function.items(), key=lambda x: -x[1])[:10]
    )
    own = "\n".join(
        f"| `{f[:90]}` | {n / total:.1%} |"
        for f, n in sorted(ours.items(), key=lambda x: -x[1])[:15]
    )
    return f"""
## Profile of {phase}

py-spy sampled the bot at 250 Hz while {during} ({total} samples). Where the time
went, by the library of the innermost frame:

| where | share of samples |
|---|---|
{groups}

The ten busiest functions (own time):

| function | share |
|---|---|
{top}

The bot's own functions with the most samples under them (inclusive):

| function | share |
|---|---|
{own}
"""


def _machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    system = f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores"
    return f"{system}, {cpu}, Python {platform.python_version()}"


def report(
    rows: list[tuple[str, str, str, str]],
    results: dict[str, float],
    quick: bool,
    profile_md: str,
    workers: int | None = None,
) -> None:
    header = ("measure", "promote-bot", "bare Bolt", "bot / bare")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    lines = [" | ".join(c.ljust(w) for c, w in zip(header, widths, strict=True))]
    lines.append("-|-".join("-" * w for w in widths))
    lines += [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    table = "\n".join(lines)
    print(table)
    checks = []
    for name, target in TARGETS.items():
        value = results.get(name)
        if value is None:
            continue
        better_low = name not in ("throughput ratio",)
        met = value <= target if better_low else value >= target
        sign = "≤" if better_low else "≥"
        checks.append(
            f"| {name} | {value:.3g} | {sign} {target} | {'met' if met else '**missed**'} |"
        )
    command = (
        "python -m bench.run --profile"
        + (" --quick" if quick else "")
        + (f" --workers {workers}" if workers else "")
    )
    md = f"""# Benchmarks

Run on demand with `{command}` (not part of the test suite); it rewrites this file.
Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {_machine()}.

Each system under test runs as its own process in HTTP mode on loopback; the fake Slack Web API
and fake providers run in a second process and the load generator (aiohttp, every request built
and signed before the clock starts; its own CPU share is a row of the table) in a third. The bot
and two bare Bolt `AsyncApp`s whose only listener acks are measured alternately in the same run:
one with Bolt's defaults (the baseline of the targets) and one that, like the bot, answers as its
listener returns (`process_before_response=True`).
Every bot command is a real one for a thing of its own (`/promote znyx bN dev`, each with its
own trigger id): after each ack a worker reads the preview from the fake Znyx, writes SQLite and
posts the release message; the baselines' next round starts only when all of that has finished.

## Figures

{_markdown(header, rows)}

## Targets

| measure | value | target | |
|---|---|---|---|
{chr(10).join(checks)}

Ratios are the worst over the three concurrencies.

## Reading the figures

- Ratios are bot / bare Bolt measured in the same run; the ack ratio targets are the worst of
  c=32 and c=128. Bolt's default listener runner polls for `ack()` every 10 ms, so the default
  baseline answers in about 12 ms even at c=1. The bot's listeners only record the work and ack,
  so it runs Bolt with `process_before_response=True`, which answers as the listener returns;
  the rows "against bare Bolt answering as its listener returns" compare it with a bare app
  set the same way.
- Acks first: the work after each ack runs in a pool of at most `PROMOTE_BOT_WORKERS` workers
  (default 32), and a worker starts no new item while a payload is being answered (it waits
  for 3 ms without one, or until the item has waited 2 s). A burst makes the release messages
  later (the "last release message" rows), not the acks slower.
- Start to ready is from the process's start to its first answer on PORT, with the modules
  compiled beforehand as `pip install .` and the Docker image have them.
- Promotions at once are bounded by CPU: the bot's per promotion on one event loop, and the
  fakes' on theirs. "The fakes' own floor" is the least the phase could take if the bot cost
  nothing: the fakes' CPU seconds for it (they answer on one event loop), or one promotion's
  own time (the provider takes 200 ms) if that is longer. The fake Slack finds a message
  newest first, so the floor no longer grows with the messages of the run's earlier phases
  (it did: 4.3 ms of the fakes' CPU per promotion late in a run against 1.2-1.9 ms on fresh
  fakes, which made the ratio look 2-3 times better than it was). With the default 32
  workers, each holding its promotion through the provider's 200 ms, the phase also waits
  for workers: `--workers 128` took 4.2 s instead of 6.4 s in one run, at the same ratio to
  the floor (the fakes' CPU moved with it) and the same ack ratios. Several bot processes on
  one database share the work and stay exactly-once.
- CPU per full promotion is the bot's, from the command to the outcome in the thread: two
  acks, the preview (two provider reads), the release message, the check before the write (two
  more), the promotion, two message updates and the outcome in the thread: 11 HTTP exchanges
  (the "outbound HTTP calls" row counts the nine the fakes saw), and the SQL statements that
  record each step (a request, its approvals and its rollback are read in one: a Znyx
  promotion of the test world takes 64, in 32 transactions). "The same HTTP exchanges from bare
  Bolt" is the floor of that CPU with the bot's libraries: a bare Bolt app that acks the same
  commands and clicks and then makes the same nine calls with the bot's clients (httpx on the
  providers' transport, slack-sdk on one aiohttp session), and nothing else. Its ratio to bare
  Bolt's CPU per ack is what the exchanges alone cost; the bot's ratio to it is what its own
  work (the store, the rules, rendering, audit, logging) adds. Provider calls go through
  aiohttp's pool (bot/providers/transport.py): on httpcore's pool, which looks at every
  connection it holds on every request and release, the bot spent 15.9-19.6 ms of CPU per
  promotion against 8.9-9.7 ms on aiohttp's, side by side on one machine (300 promotions at
  concurrency 32, runs alternated; 2026-12-02).
{profile_md}"""
    (ROOT / "BENCHMARKS.md").write_text(md)


async def _exchanges_cpu(
    env: dict[str, str], workdir: Path, fakes: Fakes, texts: list[str]
) -> tuple[float, dict[str, int]]:
    """Milliseconds of CPU per promotion that bare Bolt spends making a promotion's HTTP calls
    (bench/bare_bolt.py's EXCHANGES) after acking its command and its click, sent as the bot's
    are: the commands 32 at a time, then every click at once; and the calls the fakes saw."""
    floor = system("exchanges", env, workdir / "exchanges.db")
    await floor.start()
    assert floor.proc is not None
    count = len(texts)
    job = {"url": floor.url, "secret": SECRET, "user": REQUESTER}
    try:
        cpu_at = cpu_seconds(floor.proc.pid)
        since = time.time()
        await load({**job, "kind": "command", "texts": texts, "concurrency": min(count, 32)})
        await fakes.wait("posts", count, since)
        await asyncio.sleep(0.2)  # the posts' answers are in
        clicks = {"ids": list(range(1, count + 1)), "ts": ["1"] * count, "concurrency": count}
        await load({**job, "kind": "click", **clicks, "user": APPROVER})
        await fakes.wait("threads", count, since)
        await asyncio.sleep(0.5)  # the last updates after the thread replies
        cpu = (cpu_seconds(floor.proc.pid) - cpu_at) / count * 1000
        return cpu, (await fakes.stats(since))["calls"]
    finally:
        await floor.stop()


def _per(calls: dict[str, int], count: int) -> str:
    return ", ".join(f"{kind} {n / count:.2f}" for kind, n in sorted(calls.items()))


def _markdown(header: tuple[str, ...], rows: list[tuple[str, str, str, str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="a fifth of the requests, for a smoke run"
    )
    parser.add_argument(
        "--profile", action="store_true", help="py-spy the bot during the promotions-at-once phase"
    )
    parser.add_argument(
        "--workers", type=int, help="PROMOTE_BOT_WORKERS for the bot (its default otherwise)"
    )
    parser.add_argument(
        "--no-growth", action="store_true", help="leave out the growth benchmark (bench/growth.py)"
    )
    args = parser.parse_args()
    asyncio.run(main(args.quick, args.profile, args.workers, growing=not args.no_growth))
