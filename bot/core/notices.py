"""The bot's own messages besides release messages and their outcome replies: a change made
outside it told in a channel, a provider confirming one of its changes in a request's thread.

Each is recorded under a key before it is posted, so it is posted once however many
deliveries or processes come to tell it; Slack failing is tried again with backoff (from
`post_due`, the scheduler's `deliver` job), and a post whose answer was lost is never sent
again (a notice missing is better than one told twice).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from bot.core.context import Context
from bot.core.ports import ChatError

log = logging.getLogger(__name__)

LEASE = timedelta(minutes=1)  # a process posting a notice holds it this long
BACKOFF_CAP = 60.0  # seconds between tries, at most
MAX_ATTEMPTS = 20  # then it is given up, logged (about a quarter of an hour of tries)


class Notices:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def tell(
        self, key: str, channel: str, text: str, *, thread_ts: str | None = None
    ) -> bool:
        """Post `text` (the core's markup) in `channel`, or under `thread_ts`, once for `key`;
        False if it was told before."""
        store = self.ctx.store
        if not store.notice_put(key, channel, thread_ts, text, self.ctx.clock()):
            return False
        await self._post(key)
        return True

    async def post_due(self) -> int:
        """Post the notices Slack failed to take before; how many it took now."""
        posted = 0
        for key in self.ctx.store.notices_due(self.ctx.clock(), 50):
            posted += await self._post(key)
        return posted

    async def _post(self, key: str) -> bool:
        ctx = self.ctx
        now = ctx.clock()
        notice = ctx.store.notice_take(key, now, now + LEASE)
        if notice is None:
            return False  # posted, or another process is posting it
        attempts = int(notice["attempts"])
        try:
            await ctx.chat.post_note(
                notice["channel"], notice["text"], thread_ts=notice["thread_ts"]
            )
        except ChatError as exc:
            if exc.maybe_done or exc.gone or attempts >= MAX_ATTEMPTS:
                how = "may have been posted" if exc.maybe_done else "was given up"
                log.warning("the notice %s %s: %s", key, how, exc)
                ctx.store.notice_done(key, ctx.clock())
                return False
            delay = max(min(2.0**attempts, BACKOFF_CAP), exc.retry_after or 0.0)
            ctx.store.notice_later(key, ctx.clock() + timedelta(seconds=delay))
            if attempts == 1:
                log.warning("Slack did not take the notice %s (%s); trying again", key, exc)
            return False
        ctx.store.notice_done(key, ctx.clock())
        return True
