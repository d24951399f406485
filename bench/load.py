"""The load generator, run as a process of its own: signed Slack requests, timed.

`python -m bench.load '<json job>'` prints one JSON object: per-request latencies (seconds),
send times (wall clock) and the run's wall time. Jobs:
  {"url", "secret", "kind": "command", "text", "user", "count", "concurrency"}
  {"url", "secret", "kind": "click", "ids": [...], "user", "concurrency", "gap"?}
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from bot.sandbox.slack_requests import SlackSender
from bot.transports.slack.blocks import APPROVE


async def run(job: dict) -> dict:
    sender = SlackSender(job["url"], job["secret"], job.get("response_base", "http://127.0.0.1:9"))
    if job["kind"] == "command":
        bodies = [sender.command_body(job["text"], job["user"]) for _ in range(job["count"])]
    else:
        bodies = [sender.click_body(APPROVE, str(i), job["user"]) for i in job["ids"]]
    latencies: list[float] = [0.0] * len(bodies)
    sent: list[float] = [0.0] * len(bodies)
    failures = 0
    next_index = iter(range(len(bodies)))

    gap = float(job.get("gap", 0.0))  # seconds to wait after each request (one worker: in turn)

    async def worker() -> None:
        nonlocal failures
        for i in next_index:
            if gap and i:
                await asyncio.sleep(gap)
            sent[i] = time.time()
            started = time.perf_counter()
            response = await sender.post(bodies[i])
            latencies[i] = time.perf_counter() - started
            failures += response.status_code != 200

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(job["concurrency"])))
    wall = time.perf_counter() - started
    await sender.aclose()
    return {"latencies": latencies, "sent": sent, "wall": wall, "failures": failures}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(run(json.loads(sys.argv[1])))))
