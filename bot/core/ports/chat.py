"""Where release messages live: Slack in production, the terminal in the shell."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from bot.core.render import NoticeView, RequestView


class ChatError(Exception):
    """The chat refused a post or an update, or could not be reached; the message says why.

    `maybe_done`: the request may have reached the chat (a reset after sending, a timeout),
    so a post must not simply be sent again. `retry_after`: seconds the chat asked to wait.
    `gone`: the message or its channel is no more (deleted, archived): trying again can't help."""

    def __init__(
        self,
        message: str,
        *,
        maybe_done: bool = False,
        retry_after: float | None = None,
        gone: bool = False,
    ) -> None:
        super().__init__(message)
        self.maybe_done = maybe_done
        self.retry_after = retry_after
        self.gone = gone


class Chat(Protocol):
    """Release messages: posted, found again, updated, and their outcome in the thread; and
    direct messages to people."""

    async def post_request(self, channel: str, view: RequestView, *, request_id: int) -> str:
        """Post a release message; return its reference (Slack's `ts`)."""
        ...

    async def find_request(self, channel: str, request_id: int, since: datetime) -> str | None:
        """The reference of a release message of `request_id` the chat shows, if any (after a
        post whose answer was lost), looking at every message since `since` (when the request
        was made); ChatError if there are more of those than the chat looks through."""
        ...

    async def update_request(self, channel: str, ts: str, view: RequestView) -> None: ...

    async def post_in_thread(self, channel: str, ts: str, view: RequestView) -> None:
        """Post the request's outcome (or the reason it ended) under its message."""
        ...

    async def find_outcome(self, channel: str, ts: str, request_id: int) -> bool:
        """Whether the thread under message `ts` holds `request_id`'s outcome (after a post
        whose answer was lost); False if the message or its thread is gone."""
        ...

    async def post_note(self, channel: str, text: str, *, thread_ts: str | None = None) -> str:
        """A message of the bot's own in the core's markup (a change made outside it, a
        provider confirming one of its changes), in `channel` or under `thread_ts`; its ts."""
        ...

    def link(self, channel: str, ts: str) -> str | None:
        """A link to a release message, if the chat has such links (no I/O)."""
        ...

    async def post_notice(self, view: NoticeView) -> None:
        """Send `view` to its person directly (a direct message), marked with its key.
        ChatError with `gone` when that person can never be sent one (deactivated, a bot)."""
        ...

    async def time_zone(self, user: str) -> str | None:
        """`user`'s own time zone (an IANA name), if the chat knows it; None otherwise."""
        ...

    async def find_notice(self, user: str, key: str, since: datetime) -> bool:
        """Whether `user`'s direct messages since `since` hold the notice `key` (after a send
        whose answer was lost)."""
        ...
