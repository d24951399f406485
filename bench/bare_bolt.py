"""The baseline: a bare Bolt AsyncApp whose only listener acks, served like the bot.

Prints "listening on http://0.0.0.0:PORT/slack/events" like `promote-bot serve` does. With
BENCH_BEFORE_RESPONSE=1 it answers as the listener returns (`process_before_response`), as the
bot does, instead of Bolt's default of polling for the ack every 10 ms.
"""

from __future__ import annotations

import asyncio
import os

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.web import LISTENING, WebServer


async def main() -> None:
    client = AsyncWebClient(
        token=os.environ["SLACK_BOT_TOKEN"], base_url=os.environ["SLACK_API_URL"]
    )
    app = AsyncApp(
        client=client,
        signing_secret=os.environ["SLACK_SIGNING_SECRET"],
        process_before_response=os.environ.get("BENCH_BEFORE_RESPONSE") == "1",
    )

    @app.command("/promote")
    async def ack_only(ack) -> None:  # type: ignore[no-untyped-def]
        await ack()

    async with WebServer(
        app.web_app(), host="0.0.0.0", port=int(os.environ.get("PORT", "0"))
    ) as server:
        print(LISTENING.format(host="0.0.0.0", port=server.port, path="/slack/events"), flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
