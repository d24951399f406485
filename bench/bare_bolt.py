"""The baseline: a bare Bolt AsyncApp whose only listener acks, served like the bot.

Prints "listening on http://0.0.0.0:PORT/slack/events" like `promote-bot serve` does. With
BENCH_BEFORE_RESPONSE=1 it answers as the listener returns (`process_before_response`), as the
bot does, instead of Bolt's default of polling for the ack every 10 ms.

With BENCH_EXCHANGES=1 it is the floor of a promotion's CPU with the bot's libraries: after
each ack it makes the HTTP calls the bot makes for that payload (EXCHANGES), with the clients
the bot uses (httpx on the providers' transport, slack-sdk on one aiohttp session), and
nothing else: no store, no rules, no rendering beyond a one-block message.
"""

from __future__ import annotations

import asyncio
import os
from collections import deque
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.web import LISTENING, WebServer

# What the bot sends per promotion in the bench's world (Znyx, one approval, nobody asked to
# be told in a direct message), as the fakes count it (bench.run prints both counts): a
# command's preview reads the source's and the target's bundles and posts the release
# message; a click reads both again (the check before the write), promotes, updates the
# message twice and replies in its thread.
EXCHANGES = {
    "command": ["GET bundles", "GET bundles", "chat.postMessage"],
    "click": [
        "GET bundles",
        "GET bundles",
        "POST promote",
        "chat.update",
        "chat.postMessage (thread)",
        "chat.update",
    ],
}
ORG = "org-sandbox"


class Exchanges:
    """The calls of EXCHANGES, made with the bot's clients, for a command or a click."""

    def __init__(self, slack: AsyncWebClient) -> None:
        # Imported here: the plain baseline's start-up and memory are the bare Bolt app's.
        import httpx

        from bot.providers.http import DEFAULT_LIMITS
        from bot.providers.transport import ProviderTransport

        self.slack = slack
        self.znyx = httpx.AsyncClient(
            base_url=os.environ["ZNYX_API_URL"].rstrip("/") + "/",
            headers={"Authorization": f"Bearer {os.environ['ZNYX_TOKEN']}"},
            transport=ProviderTransport(DEFAULT_LIMITS),
        )
        self.posted: deque[tuple[str, str]] = deque()  # release messages: channel, ts
        self.tasks: set[asyncio.Task[None]] = set()

    def start(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _read(self, project: str, env: str) -> None:
        path = f"v1/orgs/{ORG}/projects/proj-{project}/envs/{env}/bundles"
        (await self.znyx.get(path)).json()

    async def command(self, text: str, channel: str) -> None:
        _, project, env = text.split()  # "znyx b1 dev"
        await self._read(project, env)
        await self._read(project, "staging" if env == "dev" else "prod")
        blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]
        posted = await self.slack.chat_postMessage(channel=channel, text=text, blocks=blocks)
        self.posted.append((channel, posted["ts"]))

    async def click(self, user: str) -> None:
        channel, ts = self.posted.popleft()  # clicks come after their commands, in order
        await self._read("guardrails", "dev")
        await self._read("guardrails", "staging")
        path = f"v1/orgs/{ORG}/projects/proj-guardrails/envs/dev/promote"
        (await self.znyx.post(path, json={"promoted_by": user})).json()
        blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "promoting"}}]
        await self.slack.chat_update(channel=channel, ts=ts, text="promoting", blocks=blocks)
        await self.slack.chat_postMessage(channel=channel, thread_ts=ts, text="done")
        await self.slack.chat_update(channel=channel, ts=ts, text="done", blocks=blocks)


async def main() -> None:
    exchanging = os.environ.get("BENCH_EXCHANGES") == "1"
    session: dict[str, Any] = {}
    if exchanging:  # one session for every call, as the bot keeps
        import aiohttp

        session["session"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200))
    client = AsyncWebClient(
        token=os.environ["SLACK_BOT_TOKEN"], base_url=os.environ["SLACK_API_URL"], **session
    )
    app = AsyncApp(
        client=client,
        signing_secret=os.environ["SLACK_SIGNING_SECRET"],
        process_before_response=os.environ.get("BENCH_BEFORE_RESPONSE") == "1" or exchanging,
    )
    exchanges = Exchanges(client) if exchanging else None

    @app.command("/promote")
    async def ack_only(ack, command) -> None:  # type: ignore[no-untyped-def]
        await ack()
        if exchanges is not None and command["text"].startswith("znyx "):  # not the "help"
            exchanges.start(exchanges.command(command["text"], command["channel_id"]))

    if exchanges is not None:

        @app.action("promote_approve")
        async def approved(ack, body) -> None:  # type: ignore[no-untyped-def]
            await ack()
            exchanges.start(exchanges.click(body["user"]["id"]))

    async with WebServer(
        app.web_app(), host="0.0.0.0", port=int(os.environ.get("PORT", "0"))
    ) as server:
        print(LISTENING.format(host="0.0.0.0", port=server.port, path="/slack/events"), flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
