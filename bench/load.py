"""The load generator, run as a process of its own: signed Slack requests, timed.

`python -m bench.load '<json job>'` prints one JSON object: per-request latencies (seconds),
send times (wall clock), the run's wall time and the CPU seconds this process spent (so the
report can show that the generator, not the system under test, is not the bottleneck). Jobs:
  {"url", "secret", "kind": "command", "texts": [...], "user", "concurrency", "gap"?}
  {"url", "secret", "kind": "click", "ids": [...], "ts": [...], "user", "concurrency", "gap"?}
  {"url", "secret", "kind": "home", "users": [...], "concurrency", "gap"?}  (app_home_opened)
(a click carries its release message's ts, as Slack's do: `ts[i]` is request `ids[i]`'s). With
"response_base", commands and clicks carry response URLs there (the fake Slack's); the output's
"keys" are their keys, in order, for matching the answers the fake received.

Every body is built and signed before the clock starts, each with its own trigger id, and
sent with a plain aiohttp client (one connection per concurrent sender, kept alive): httpx
costs several times more CPU per request and could not drive a bare Bolt app at full speed.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from urllib.parse import parse_qs

import aiohttp

from bot.sandbox.slack_requests import SlackSender
from bot.transports.slack.blocks import APPROVE


async def run(job: dict) -> dict:
    signer = SlackSender(job["url"], job["secret"], job.get("response_base", "http://127.0.0.1:9"))
    await signer.aclose()  # only its body builders and signer are used
    if job["kind"] == "command":
        bodies = [signer.command_body(text, job["user"]) for text in job["texts"]]
    elif job["kind"] == "home":
        bodies = [
            signer.event_body({"type": "app_home_opened", "user": user, "tab": "home"})
            for user in job["users"]
        ]
    else:
        bodies = [
            signer.click_body(APPROVE, str(i), job["user"], ts=ts)
            for i, ts in zip(job["ids"], job["ts"], strict=True)
        ]
    json_body = {"Content-Type": "application/json"} if job["kind"] == "home" else {}
    requests = [(b.encode(), {**signer.signed_headers(b), **json_body}) for b in bodies]
    keys = [_response_key(b) for b in bodies]
    latencies: list[float] = [0.0] * len(bodies)
    sent: list[float] = [0.0] * len(bodies)
    failures = 0
    next_index = iter(range(len(bodies)))
    gap = float(job.get("gap", 0.0))  # seconds to wait after each request (one worker: in turn)
    concurrency = int(job["concurrency"])
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    timeout = aiohttp.ClientTimeout(total=60)

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:

        async def worker() -> None:
            nonlocal failures
            for i in next_index:
                if gap and i:
                    await asyncio.sleep(gap)
                body, headers = requests[i]
                sent[i] = time.time()
                started = time.perf_counter()
                async with http.post(signer.url, data=body, headers=headers) as response:
                    await response.read()
                    latencies[i] = time.perf_counter() - started
                    failures += response.status != 200

        cpu = time.process_time()
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
        cpu = time.process_time() - cpu
    return {
        "latencies": latencies,
        "sent": sent,
        "wall": wall,
        "cpu": cpu,
        "failures": failures,
        "keys": keys,
    }


def _response_key(body: str) -> str | None:
    """The key of the response URL a command or click body carries (`…/response/<key>`)."""
    fields = parse_qs(body)
    url = fields.get("response_url", [""])[0]
    if not url and "payload" in fields:
        url = json.loads(fields["payload"][0]).get("response_url", "")
    return url.rsplit("/response/", 1)[1] if "/response/" in url else None


if __name__ == "__main__":
    print(json.dumps(asyncio.run(run(json.loads(sys.argv[1])))))
