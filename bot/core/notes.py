"""Notes: the bot's own messages besides release messages, outcome replies and direct messages
(bot/core/notify.py): a change made outside it told in a channel, a provider confirming one of
its changes in a request's thread.

Each is recorded under a key before it is posted, so it is posted once however many
deliveries or processes come to tell it; Slack failing is tried again with backoff (from
`post_due`, the scheduler's `deliver` job), and a post whose answer was lost is never sent
again (a note missing is better than one told twice).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from bot.core.context import Context
from bot.core.ports import ChatError

log = logging.getLogger(__name__)

LEASE = timedelta(minutes=1)  # a process posting a note holds it this long
BACKOFF_CAP = 60.0  # seconds between tries, at most
MAX_ATTEMPTS = 20  # then it is given up, logged (about a quarter of an hour of tries)


class Notes:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def tell(
        self, key: str, channel: str, text: str, *, thread_ts: str | None = None
    ) -> bool:
        """Post `text` (the core's markup) in `channel`, or under `thread_ts`, once for `key`;
        False if it was told before."""
        store = self.ctx.store
        if not store.note_put(key, channel, thread_ts, text, self.ctx.clock()):
            return False
        await self._post(key)
        return True

    async def post_due(self) -> int:
        """Post the notes Slack failed to take before; how many it took now."""
        posted = 0
        for key in self.ctx.store.notes_due(self.ctx.clock(), 50):
            posted += await self._post(key)
        return posted

    async def _post(self, key: str) -> bool:
        ctx = self.ctx
        now = ctx.clock()
        note = ctx.store.note_take(key, now, now + LEASE)
        if note is None:
            return False  # posted, or another process is posting it
        attempts = int(note["attempts"])
        try:
            await ctx.chat.post_note(note["channel"], note["text"], thread_ts=note["thread_ts"])
        except ChatError as exc:
            if exc.maybe_done or exc.gone or attempts >= MAX_ATTEMPTS:
                how = "may have been posted" if exc.maybe_done else "was given up"
                log.warning("the note %s %s: %s", key, how, exc)
                ctx.store.note_done(key, ctx.clock())
                return False
            delay = max(min(2.0**attempts, BACKOFF_CAP), exc.retry_after or 0.0)
            ctx.store.note_later(key, now + timedelta(seconds=delay))
            if attempts == 1:
                log.warning("Slack did not take the note %s (%s); trying again", key, exc)
            return False
        ctx.store.note_done(key, ctx.clock())
        return True
