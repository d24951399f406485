"""The fakes for a benchmark run, in a process of their own: Slack, Znyx and App Store Connect.

`python -m bench.fakes [PROJECTS]` seeds PROJECTS extra Znyx projects (proj-b0, proj-b1, …), so
that every benchmark command can promote a thing of its own. Prints one JSON line with their
URLs, then serves until killed. `GET /_stats` on the Slack fake
answers counts and arrival times, so the harness can time what happens after an ack.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import sys
from collections import Counter

from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from bot.sandbox.appstore import FakeAppStore
from bot.sandbox.slack import FakeSlack
from bot.sandbox.world import seed_appstore, seed_znyx
from bot.sandbox.znyx import FakeZnyx
from bot.web import WebServer


def stats(slack: FakeSlack, znyx: FakeZnyx, asc: FakeAppStore) -> web.Application:
    async def get(request: web.Request) -> web.Response:
        asked = await request.json() if request.method == "POST" else dict(request.query)
        since = float(asked.get("since", 0))
        under = set(asked["under"]) if asked.get("under") is not None else None
        # The call lists only grow, in arrival order: look at the tail since `since` only.
        recent = slack.calls[bisect.bisect_left(slack.calls, since, key=lambda c: c.at) :]
        posts = [  # to channels: release messages and their threads, not direct messages
            c
            for c in recent
            if c.method == "chat.postMessage" and not str(c.args.get("channel")).startswith("D")
        ]
        znyx_recent = znyx.calls[bisect.bisect_left(znyx.calls, since, key=lambda c: c.at) :]
        calls: Counter[str] = Counter()  # what was asked since, by kind (Slack and Znyx)
        for c in recent:
            kind = c.method
            if kind == "chat.postMessage":
                if str(c.args.get("channel")).startswith("D"):
                    kind += " (direct)"
                elif "thread_ts" in c.args:
                    kind += " (thread)"
            calls[kind] += 1
        for z in znyx_recent:
            calls[f"Znyx {z.method} {z.path.rsplit('/', 1)[-1]}"] += 1
        return web.json_response(
            {
                "calls": calls,
                "threads": [
                    c.at
                    for c in posts
                    if "thread_ts" in c.args and (under is None or c.args["thread_ts"] in under)
                ],
                "posts": [c.at for c in posts if "thread_ts" not in c.args],
                "promotes": [c.at for c in znyx_recent if c.path.endswith("/promote")],
                # answers only the caller sees, by their response URL's key; App Homes shown
                "responses": {c.args["key"]: c.at for c in recent if c.method == "response_url"},
                "homes": [c.at for c in recent if c.method == "views.publish"],
                "asc_tokens": len(asc.tokens_seen),
            }
        )

    async def control(request: web.Request) -> web.Response:
        body = await request.json()
        znyx.promote_delay = float(body.get("promote_delay", znyx.promote_delay))
        if body.get("forget"):
            slack.calls.clear()
            znyx.calls.clear()
        return web.json_response({"promote_delay": znyx.promote_delay})

    app = web.Application()
    app.router.add_get("/_stats", get)
    app.router.add_post("/_stats", get)  # with `under`: hundreds of message ts
    app.router.add_post("/_control", control)
    return app


async def main(projects: int) -> None:
    slack, znyx, asc = FakeSlack(), FakeZnyx(), FakeAppStore()
    seed_znyx(znyx)
    for i in range(projects):
        znyx.add_project(f"proj-b{i}")
        for env, digit in (("dev", "d"), ("staging", "5"), ("prod", "0")):
            znyx.publish(f"proj-b{i}", env, "sha256:" + digit * 64)
    key = ec.generate_private_key(ec.SECP256R1())
    seed_appstore(asc, key)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    async with (
        WebServer(slack.app()) as s,
        WebServer(znyx.app()) as z,
        WebServer(asc.app()) as a,
        WebServer(stats(slack, znyx, asc)) as st,
    ):
        urls = {"slack": s.url, "znyx": z.url, "asc": a.url, "stats": st.url, "asc_key": pem}
        print(json.dumps(urls), flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    try:
        asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 0))
    except KeyboardInterrupt:
        sys.exit(0)
