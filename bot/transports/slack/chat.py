"""The `Chat` port on Slack's Web API, through slack-sdk's AsyncWebClient."""

from __future__ import annotations

from collections.abc import Awaitable

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from bot.core.ports import ChatError
from bot.core.render import RequestView
from bot.transports.slack import blocks

_EXPLAIN = {
    "not_in_channel": "I'm not in this channel: add me with /invite @promote-bot",
    "channel_not_found": "I can't see this channel: add me with /invite @promote-bot",
    "is_archived": "this channel is archived",
    "invalid_auth": "Slack rejected SLACK_BOT_TOKEN",
    "missing_scope": "the Slack app lacks a scope it needs (reinstall it from manifest.yml)",
}


class SlackChat:
    def __init__(self, client: AsyncWebClient, workspace_url: str | None = None) -> None:
        """`workspace_url` is auth.test's `url` (https://<team>.slack.com/), for links."""
        self.client = client
        self.workspace_url = workspace_url

    def link(self, channel: str, ts: str) -> str | None:
        """The message's archive link, built rather than asked for: chat.getPermalink would be
        one rate-limited Web API call per listed request, and its answer is this same URL."""
        if not self.workspace_url:
            return None
        return f"{self.workspace_url.rstrip('/')}/archives/{channel}/p{ts.replace('.', '')}"

    async def _call(self, call: Awaitable[AsyncSlackResponse]) -> AsyncSlackResponse:
        try:
            return await call
        except SlackApiError as exc:
            code = str(exc.response.get("error", "unknown_error"))
            raise ChatError(_EXPLAIN.get(code, f"Slack said {code}")) from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ChatError(f"Slack could not be reached ({type(exc).__name__})") from None

    async def post_request(self, channel: str, view: RequestView) -> str:
        response = await self._call(
            self.client.chat_postMessage(
                channel=channel, text=view.summary, blocks=blocks.release_message(view)
            )
        )
        return str(response["ts"])

    async def update_request(self, channel: str, ts: str, view: RequestView) -> None:
        await self._call(
            self.client.chat_update(
                channel=channel, ts=ts, text=view.summary, blocks=blocks.release_message(view)
            )
        )

    async def post_in_thread(self, channel: str, ts: str, view: RequestView) -> None:
        text, reply_blocks = blocks.thread_reply(view)
        await self._call(
            self.client.chat_postMessage(
                channel=channel, thread_ts=ts, text=text, blocks=reply_blocks
            )
        )
