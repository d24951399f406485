"""The `Chat` port on Slack's Web API, through slack-sdk's AsyncWebClient.

Release messages carry Slack message metadata naming their request, so a post whose answer was
lost can be found again (`find_request`) instead of being posted twice.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from bot.core.ports import ChatError
from bot.core.render import NoticeView, RequestView
from bot.transports.slack import blocks

REQUEST_EVENT = "promote_bot_request"  # the metadata event type of a release message
OUTCOME_EVENT = "promote_bot_outcome"  # ... and of an outcome posted in its thread
NOTICE_EVENT = "promote_bot_notice"  # ... and of a direct message to a person
# A lost release message is looked for among the channel's messages since its request was made
# (less this much, for clocks that differ), 200 at a time, newest first, up to 10 pages.
HISTORY_SKEW = timedelta(minutes=5)
HISTORY_PAGE, HISTORY_PAGES = 200, 10
THREAD_PAGE, THREAD_PAGES = 200, 10  # a thread is looked through 200 replies at a time
ZONE_MEMORY = 24 * 3600.0  # seconds a person's time zone (users.info) is kept

_EXPLAIN = {
    "not_in_channel": "I'm not in this channel: add me with /invite @promote-bot",
    "channel_not_found": "I can't see this channel: add me with /invite @promote-bot",
    "is_archived": "this channel is archived",
    "invalid_auth": "Slack rejected SLACK_BOT_TOKEN",
    "missing_scope": "the Slack app lacks a scope it needs (reinstall it from manifest.yml)",
    "ratelimited": "Slack is rate-limiting the bot",
    "message_not_found": "the message is no longer in Slack (deleted?)",
    "thread_not_found": "the message's thread is no longer in Slack",
}
# Errors after which "some aspect of the operation may have succeeded" (Slack's words).
_MAYBE_DONE = {"internal_error", "fatal_error", "request_timeout", "service_unavailable"}
# The message (or its channel) is no more: updating it again can never work.
_GONE = {"message_not_found", "thread_not_found", "cant_update_message", "is_archived"}
# A person who can never be sent a direct message (conversations.open, chat.postMessage).
_NO_DM = {
    "user_not_found",
    "user_disabled",
    "user_not_visible",
    "cannot_dm_bot",
    "messages_tab_disabled",
    "not_allowed_token_type",
}


def retry_after(exc: SlackApiError) -> float | None:
    """The seconds a rate-limited call's answer asks to wait (Retry-After), else None."""
    response = exc.response
    if response.get("error") != "ratelimited" and getattr(response, "status_code", 200) != 429:
        return None
    try:
        return float(response.headers.get("Retry-After", "30"))
    except (TypeError, ValueError):
        return 30.0


def _metadata(event_type: str, request_id: int, **more: str) -> dict[str, Any]:
    return {"event_type": event_type, "event_payload": {"request_id": request_id, **more}}


def _names(message: dict[str, Any], event_type: str, **wanted: object) -> bool:
    """Does `message` carry metadata of `event_type` whose payload has what is `wanted`
    (`request_id=3`, `key="3:U1:waiting"`), as `_metadata` gave it?"""
    meta = message.get("metadata") or {}
    payload = meta.get("event_payload") or {}
    return meta.get("event_type") == event_type and all(
        payload.get(k) == v for k, v in wanted.items()
    )


class SlackChat:
    def __init__(self, client: AsyncWebClient, workspace_url: str | None = None) -> None:
        """`workspace_url` is auth.test's `url` (https://<team>.slack.com/), for links."""
        self.client = client
        self.workspace_url = workspace_url
        self._dms: dict[str, str] = {}  # user → the id of the bot's direct messages with them
        self._zones: dict[str, tuple[str | None, float]] = {}  # user → (tz, when it was read)

    def link(self, channel: str, ts: str) -> str | None:
        """The message's archive link, built rather than asked for: chat.getPermalink would be
        one rate-limited Web API call per listed request, and its answer is this same URL."""
        if not self.workspace_url:
            return None
        return f"{self.workspace_url.rstrip('/')}/archives/{channel}/p{ts.replace('.', '')}"

    async def _call(
        self, call: Awaitable[AsyncSlackResponse], gone: set[str] = _GONE
    ) -> AsyncSlackResponse:
        try:
            return await call
        except SlackApiError as exc:
            response = exc.response
            code = str(response.get("error", "unknown_error"))
            status = getattr(response, "status_code", 200)
            raise ChatError(
                _EXPLAIN.get(code, f"Slack said {code} (HTTP {status})"),
                # Slack may have done it before failing (its docs say so of these errors).
                maybe_done=status >= 500 or code in _MAYBE_DONE,
                retry_after=retry_after(exc),
                gone=code in gone,
            ) from None
        except aiohttp.ClientConnectorError as exc:  # never reached Slack
            raise ChatError(f"Slack could not be reached ({type(exc).__name__})") from None
        except (aiohttp.ClientError, TimeoutError) as exc:  # sent; the answer was lost
            raise ChatError(
                f"Slack did not answer ({type(exc).__name__})", maybe_done=True
            ) from None

    async def post_request(self, channel: str, view: RequestView, *, request_id: int) -> str:
        response = await self._call(
            self.client.chat_postMessage(
                channel=channel,
                text=view.summary,
                blocks=blocks.release_message(view),
                metadata=_metadata(REQUEST_EVENT, request_id),
            )
        )
        return str(response["ts"])

    async def _pages(
        self, call: Awaitable[AsyncSlackResponse], most: int, too_many: str
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """The messages of each page of a cursor-paged answer (slack-sdk follows the cursor);
        ChatError(`too_many`) if there are more than `most` pages."""
        pages = (await self._call(call)).__aiter__()
        for _ in range(most):
            page = await self._call(pages.__anext__())  # the first is the answer itself
            yield page.get("messages") or []
            if not (page.get("response_metadata") or {}).get("next_cursor"):
                return
        raise ChatError(too_many)

    async def find_request(self, channel: str, request_id: int, since: datetime) -> str | None:
        too_many = (
            f"over {HISTORY_PAGES * HISTORY_PAGE} messages came to the channel since shortly "
            f"before #{request_id} was made, more than the bot looks through"
        )
        found = await self._find_since(
            channel, since, lambda m: _names(m, REQUEST_EVENT, request_id=request_id), too_many
        )
        return str(found["ts"]) if found else None

    async def _find_since(
        self,
        channel: str,
        since: datetime,
        wanted: Callable[[dict[str, Any]], bool],
        too_many: str,
    ) -> dict[str, Any] | None:
        """The newest message of `channel` since `since` that is `wanted`, if any."""
        history = self.client.conversations_history(
            channel=channel,
            oldest=f"{(since - HISTORY_SKEW).timestamp():.6f}",
            limit=HISTORY_PAGE,
            include_all_metadata=True,
        )
        async with contextlib.aclosing(self._pages(history, HISTORY_PAGES, too_many)) as pages:
            async for messages in pages:
                for message in messages:
                    if wanted(message):
                        return message
        return None

    async def find_outcome(self, channel: str, ts: str, request_id: int) -> bool:
        replies = self.client.conversations_replies(
            channel=channel, ts=ts, limit=THREAD_PAGE, include_all_metadata=True
        )
        too_many = f"the thread of {ts} is longer than the bot looks through"
        try:
            async with contextlib.aclosing(self._pages(replies, THREAD_PAGES, too_many)) as pages:
                async for messages in pages:
                    if any(_names(m, OUTCOME_EVENT, request_id=request_id) for m in messages):
                        return True
        except ChatError as exc:
            if exc.gone:
                return False  # no thread to hold it: posting finds the same and stops
            raise
        return False

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
                channel=channel,
                thread_ts=ts,
                text=text,
                blocks=reply_blocks,
                metadata=_metadata(OUTCOME_EVENT, view.request_id),
            )
        )

    async def _dm(self, user: str) -> str:
        """The bot's direct message conversation with `user` (opened once, then known)."""
        if user not in self._dms:
            response = await self._call(self.client.conversations_open(users=user), _NO_DM)
            self._dms[user] = str((response.get("channel") or {})["id"])
        return self._dms[user]

    async def post_notice(self, view: NoticeView) -> None:
        """conversations.open, then chat.postMessage to that conversation, with metadata
        naming the notice so a send whose answer was lost can be found (`find_notice`)."""
        channel = await self._dm(view.user)
        text, notice_blocks = blocks.notice(view)
        await self._call(
            self.client.chat_postMessage(
                channel=channel,
                text=text,
                blocks=notice_blocks,
                metadata=_metadata(NOTICE_EVENT, view.request_id, key=view.key),
                unfurl_links=False,
            ),
            _NO_DM,
        )

    async def time_zone(self, user: str) -> str | None:
        """The person's time zone from `users.info` (`tz`, an IANA name), kept for a day; None
        when Slack does not say (then the config's `timezone` is used)."""
        now = time.monotonic()
        known = self._zones.get(user)
        if known is not None and now - known[1] < ZONE_MEMORY:
            return known[0]
        response = await self._call(self.client.users_info(user=user))
        found = (response.get("user") or {}).get("tz")
        zone = found if isinstance(found, str) and found else None
        self._zones[user] = (zone, now)
        return zone

    async def find_notice(self, user: str, key: str, since: datetime) -> bool:
        channel = await self._dm(user)
        too_many = f"over {HISTORY_PAGES * HISTORY_PAGE} direct messages to {user} since then"
        found = await self._find_since(
            channel, since, lambda m: _names(m, NOTICE_EVENT, key=key), too_many
        )
        return found is not None

    async def post_note(self, channel: str, text: str, *, thread_ts: str | None = None) -> str:
        """A message of the bot's own, in the core's markup (mrkdwn): in the channel, or under
        a release message."""
        response = await self._call(
            self.client.chat_postMessage(
                channel=channel,
                thread_ts=thread_ts,
                text=text,
                blocks=blocks.note(text),
                unfurl_links=False,
            )
        )
        return str(response["ts"])

    async def tell(self, channel: str, user: str, text: str) -> None:
        """An answer only `user` sees in `channel`, when their response_url failed."""
        await self._call(self.client.chat_postEphemeral(channel=channel, user=user, text=text))
