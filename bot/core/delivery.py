"""Bringing Slack up to date: every release message (and any copy of it) shows the request's
stored version, and once the request has ended its outcome is in the thread, once.

Slack may fail at any moment: a failure is recorded and tried again with backoff (`deliver_due`,
run by the scheduler); a post whose answer was lost is looked for before it is sent again; a
release message a stopped process never posted is posted; a copy a click reveals is adopted.
A write whose answer was lost (a timeout) may still be carried out by Slack later, over a
newer one: the message is looked at again once that can no longer happen (`MESSAGE_SETTLE`),
and brought back to the stored version; a post the bot gave up on is looked for then too.
So that a process killed while Slack holds its write leaves that look owed too, each write is
recorded in the store before it goes out (`_write`), and cleared once Slack answers it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from functools import partial
from typing import Literal, TypeVar

from bot.core import render, timing
from bot.core.context import Context
from bot.core.holds import hold_texts, unconfigured
from bot.core.model import BOT_ACTOR, Request, State
from bot.core.ports import ChatError, StoreError

log = logging.getLogger(__name__)
T = TypeVar("T")

# How long a process holds the duty of posting an outcome's thread reply: well past the longest
# post (10 s timeout, a rate-limited wait, 10 s again), so a live post is never doubled; one a
# stopped process left is looked for after it.
THREAD_CLAIM = timedelta(minutes=5)
# How long after a post whose answer was lost it is looked for: long enough for it to land.
THREAD_SETTLE = timedelta(seconds=30)
MESSAGE_BACKOFF_CAP = 15  # seconds between tries to bring a message up to date, at most
UNPOSTED_GRACE = timedelta(seconds=30)  # a live process posts well within this (10 s timeout)
UNPOSTED_RETRY = timedelta(minutes=1)  # after Slack failed to show or take one, try it again
AUTO_LINE = "🤖 The bot asked for this itself: {source} changed and this stage follows it (`auto`)"
# How long after a write to a release message whose answer was lost (the 10 s timeout) it is
# looked at again: Slack may carry out a call after the bot stopped waiting for it.
MESSAGE_SETTLE = timedelta(seconds=30)


class Delivery:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._locks: dict[int, asyncio.Lock] = {}
        self._unposted_retry: dict[int, datetime] = {}  # request → when to look for it again

    def view(self, request: Request) -> render.RequestView:
        """The release message of `request` under the rules in force now."""
        rules, now = self.ctx.rules, self.ctx.clock()
        holds = hold_texts(self.ctx, request)
        gone = unconfigured(self.ctx, request) if request.state.is_open else None
        if gone:
            holds = (f"⚠️ {gone}: it can't be approved until it is again", *holds)
        waiting = request.state is State.APPROVED
        lines = render.timing_lines(request.timing, zone=rules.timezone, now=now, waiting=waiting)
        if request.requester == BOT_ACTOR and request.action.source_name:
            lines = (AUTO_LINE.format(source=request.action.source_name), *lines)
        return render.request_view(
            request,
            rules.policy_of(request),
            rules.role_map,
            holds,
            lines,
            timing.runs_text(request.timing, rules.timezone),
        )

    async def post(self, request: Request) -> str:
        """Post `request`'s release message and record it; its reference. ChatError if Slack
        did not take it (a post whose fate is unclear is looked for first, never sent twice)."""
        view = self.view(request)
        store = self.ctx.store
        found = None
        try:
            send = partial(self.ctx.chat.post_request, request.channel, view, request_id=request.id)
            ts = await self._write(request.id, send)
        except ChatError as exc:
            found = await self._posted_after_all(request, exc)
            if found is None:  # if it may still appear, it is looked for once it no longer can
                raise
            ts = found
        store.set_message(request.id, ts, shown=request.msg_version)
        # It may have changed while the post was on its way: then it is brought up to date.
        # A post that went through shows what the store holds unless it did.
        if found is not None or store.shown_as(request.id) != (request.state, request.msg_version):
            await self.converge(request.id)
        return ts

    async def converge(self, request_id: int) -> bool:
        """Make Slack show what the store holds: the release message (and any copy of it) at
        the stored version and, once the request has ended, its outcome in the thread, once.
        A failure is recorded and tried again by `deliver_due` with backoff; True if Slack
        shows the latest now."""
        store, chat = self.ctx.store, self.ctx.chat
        async with self._locks.setdefault(request_id, asyncio.Lock()):
            started = self.ctx.clock()  # what is sent from now on is later than a late write
            for _ in range(3):  # again if it changed while Slack was being told
                request = store.get(request_id)
                if request is None:
                    return True
                if request.message_ts is None:
                    late = await self._posted_late(request, started)
                    if late is not None:
                        return late
                    continue  # found: bring it up to date
                version = request.msg_version
                view = self.view(request)
                claim: Literal["post", "check"] | None = None
                try:
                    for ts in (request.message_ts, *request.copies):
                        try:
                            update = partial(chat.update_request, request.channel, ts, view)
                            await self._write(request_id, update)
                        except ChatError as exc:
                            self._unless_gone(request_id, exc, f"the message {ts}")
                    if request.state.is_final:
                        now = self.ctx.clock()
                        held_until = now + THREAD_CLAIM
                        claim = store.claim_thread(request_id, now, held_until)
                    if claim == "check" and await chat.find_outcome(
                        request.channel, request.message_ts, request_id
                    ):
                        log.info("the outcome of #%s did reach its thread", request_id)
                    elif claim is not None:
                        try:
                            await chat.post_in_thread(request.channel, request.message_ts, view)
                        except ChatError as exc:
                            self._unless_gone(request_id, exc, "the thread")
                except ChatError as exc:
                    if claim is not None and (exc.maybe_done or claim == "check"):
                        # Never posted twice, never guessed: looked for at the next try.
                        log.warning(
                            "the outcome of #%s may not have reached its thread (%s);"
                            " looking for it again",
                            request_id,
                            exc,
                        )
                        look_at = self.ctx.clock() + THREAD_SETTLE
                        store.thread_uncertain(request_id, held_until, look_at)
                    elif claim is not None:
                        store.release_thread(request_id, held_until)
                    self._failed(request_id, exc)
                    return False
                store.message_shown(request_id, version, thread=claim is not None)
                if request.msg_recheck_at is not None and request.msg_recheck_at <= started:
                    store.message_settled(request_id, started)
                current = store.shown_as(request_id)
                if current is None or current[1] == version:
                    return True
            return False

    async def redraw(self, which: Callable[[Request], bool] = lambda r: True) -> int:
        """Redraw the release messages of open requests `which` picks (what they show changed
        outside their own rows: a lock, the rules); how many Slack shows now."""
        shown = 0
        for request in self.ctx.store.in_states([State.PENDING, State.APPROVED]):
            if which(request):
                self.ctx.store.touch_message(request.id)
                shown += await self.converge(request.id)
        return shown

    async def touch(self, request_id: int) -> bool:
        """Something the message of `request_id` shows changed outside its row: show it."""
        self.ctx.store.touch_message(request_id)
        return await self.converge(request_id)

    async def deliver_due(self) -> int:
        """Bring every message that lags behind the store up to date (after Slack failed,
        or a restart); how many are now current."""
        done = 0
        for request_id in self.ctx.store.messages_due(self.ctx.clock()):
            try:
                done += await self.converge(request_id)
            except StoreError:
                raise  # the store is down: said once by the scheduler
            except Exception:  # one message's bug must not hold up every other message
                log.exception("bringing the message of #%s up to date failed", request_id)
                self._failed(request_id, ChatError("an internal error"))
        await self._post_unposted()
        return done

    async def adopt(self, request_id: int, channel: str, ts: str) -> bool:
        """A click revealed a copy of the release message (a post retried after its answer was
        lost): keep it in step with the request from now on."""
        store = self.ctx.store
        request = store.get(request_id)
        if request is None or channel != request.channel:
            return False
        if request.message_ts is None:
            store.set_message(request_id, ts)
        elif not store.add_copy(request_id, ts):
            return False
        log.info("adopted a copy of the release message of #%s (%s)", request_id, ts)
        await self.converge(request_id)
        return True

    async def _post_unposted(self) -> None:
        """A request recorded but whose release message was never posted (its process died
        in between) would block its thing unseen: post it now, unless Slack shows it."""
        now = self.ctx.clock()
        cutoff = now - UNPOSTED_GRACE
        self._unposted_retry = {r: at for r, at in self._unposted_retry.items() if at > now}
        for request in self.ctx.store.in_states([State.PENDING, State.APPROVED]):
            if request.message_ts is not None or request.created_at > cutoff:
                continue
            if request.id in self._unposted_retry:
                continue  # Slack failed for it a moment ago (or it is unsure): not every 2 s
            chat = self.ctx.chat
            try:
                ts = await chat.find_request(request.channel, request.id, request.created_at)
                if ts is None:
                    view = self.view(request)
                    send = partial(chat.post_request, request.channel, view, request_id=request.id)
                    ts = await self._write(request.id, send)
            except ChatError as exc:
                log.warning("could not post the release message of #%s: %s", request.id, exc)
                self._unposted_retry[request.id] = now + UNPOSTED_RETRY
                continue
            self._unposted_retry.pop(request.id, None)
            log.warning(
                "posted the release message of #%s, which a stopped process left", request.id
            )
            self.ctx.store.set_message(request.id, ts)
            await self.converge(request.id)

    async def _posted_late(self, request: Request, started: datetime) -> bool | None:
        """A request with no release message recorded: if a post of it that the bot gave up on
        (its answer was lost) is due to be looked for, look; None when it was found and is
        recorded now (to be brought up to date), else whether there is nothing more to do."""
        due = request.msg_recheck_at
        if due is None or due > started:
            return True
        try:
            ts = await self.ctx.chat.find_request(request.channel, request.id, request.created_at)
        except ChatError as exc:
            self._failed(request.id, exc)
            return False
        if ts is None:
            self.ctx.store.message_settled(request.id, started)
            return True
        log.warning(
            "the release message of #%s was posted late, after all: updating it", request.id
        )
        self.ctx.store.set_message(request.id, ts)
        return None

    async def _write(self, request_id: int, call: Callable[[], Awaitable[T]]) -> T:
        """One write to a release message (a post, an update), recorded before it goes out as
        one Slack may carry out until the chat's timeout and the settle time have passed: if
        this process is killed meanwhile, whoever runs `deliver_due` after that looks at the
        message. Once Slack answers (or refuses) it, the record is cleared unless another
        write may still land; a write whose answer was lost keeps it, later if need be."""
        store = self.ctx.store
        now = self.ctx.clock()
        until = now + self.ctx.chat_timeout + MESSAGE_SETTLE
        store.message_writing(request_id, now, until)
        try:
            result = await call()
        except ChatError as exc:
            if exc.maybe_done:  # it may land later, over a newer write
                store.message_unsettled(request_id, self.ctx.clock() + MESSAGE_SETTLE)
            else:
                store.message_written(request_id, until)
            raise
        store.message_written(request_id, until)
        return result

    async def _posted_after_all(self, request: Request, exc: ChatError) -> str | None:
        """A post whose fate is unclear (reset after sending, a timeout) is not sent blindly
        again: if Slack shows it, it is adopted."""
        if not exc.maybe_done:
            return None
        try:
            return await self.ctx.chat.find_request(request.channel, request.id, request.created_at)
        except ChatError as again:
            log.warning("could not look for the release message of #%s: %s", request.id, again)
            return None

    @staticmethod
    def _unless_gone(request_id: int, exc: ChatError, what: str) -> None:
        """Raise `exc` unless what it failed on is gone for good (deleted, archived): that is
        logged and skipped, since trying again forever could never make it show anything."""
        if not exc.gone:
            raise exc
        log.warning("%s of #%s can't be brought up to date: %s; skipped", what, request_id, exc)

    def _failed(self, request_id: int, exc: ChatError) -> None:
        now = self.ctx.clock()

        def next_try(attempts: int) -> datetime:
            delay = min(2.0**attempts, MESSAGE_BACKOFF_CAP)
            return now + timedelta(seconds=max(delay, exc.retry_after or 0.0))

        attempts = self.ctx.store.message_failed(request_id, next_try)
        if attempts == 1:
            log.warning("Slack did not take the message of #%s (%s); trying again", request_id, exc)
