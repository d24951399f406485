"""People told: a direct message to the requester when their request is approved, rejected,
cancelled by someone else, expires or ends, and to each approver the policy names when a
request waits for them (once per request, never about their own).

Who is owed what is decided where the change is made (`waiting`, `about`) and recorded by the
store in the same transaction as the change, so a crash never loses nor invents one. The
`deliver` job then sends what is owed (`deliver_due`, within its 2 s period: waking it at each
change would run all of its work again, a quarter more CPU per promotion in the bench), each
exactly once: a notice is claimed (compare-and-set) before it is sent; one whose answer was
lost, or whose process stopped while sending it, is looked for in the person's direct messages
before it is sent again; a chat that fails is tried again with backoff. What is no longer true
when its turn comes (a request that no longer waits, a person who said `/promote notify off`)
is dropped, not sent.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from bot.core import authz
from bot.core.context import Context
from bot.core.markup import literal
from bot.core.model import (
    BOT_ACTOR,
    NewRequest,
    NoticeRecord,
    Reply,
    Request,
    State,
    expired_words,
    notice_key,
)
from bot.core.policy import Policy
from bot.core.ports import ChatError, StoreError
from bot.core.render import NoticeView

log = logging.getLogger(__name__)

WAITING = "waiting"  # a request waits for this approver
APPROVED = "approved:"  # + the approver: the requester is told of each approval
HELD = "held:"  # + when: its time came and it did not run (a lock, a freeze, its approvals)
ENDED = ("rejected", "cancelled", "expired", "succeeded", "failed", "unknown")
# How long a process holds the duty of sending one notice: well past its two Web API calls
# (10 s timeout each, a rate-limited wait), so a live send is never doubled.
CLAIM = timedelta(minutes=2)
SETTLE = timedelta(seconds=30)  # after a send whose answer was lost, look for it this much later
BACKOFF_CAP = 300  # seconds between tries to send one notice, at most
GIVE_UP = timedelta(hours=24)  # a notice the chat would not take for this long is dropped
PER_RUN = 20  # notices sent by one run of the job, at most (the rest at its next run, 2 s on)


def requester_told(request: Request, event: str, actor: str | None) -> tuple[tuple[str, str], ...]:
    """What the requester is owed when `event` happens to their request by `actor` (None: the
    bot): nothing about what they did themselves."""
    if actor == request.requester or request.requester == BOT_ACTOR:
        return ()
    return ((request.requester, event),)


class Notices:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    # --- what is owed ------------------------------------------------------------------

    def waiting(self, new: NewRequest, policy: Policy) -> tuple[tuple[str, str], ...]:
        """The approvers to tell that `new` waits for them (none when it runs at once)."""
        if policy.approvals == 0:
            return ()
        role_map = self.ctx.rules.role_map
        people = authz.approvers_to_tell(role_map, policy, new.action.scope, new.requester)
        return tuple((p, WAITING) for p in people if self.ctx.store.notify_enabled(p))

    def about(self, request: Request, event: str, actor: str | None) -> tuple[tuple[str, str], ...]:
        """What the requester is owed for `event` by `actor`, unless they want none."""
        owed = requester_told(request, event, actor)
        return tuple(n for n in owed if self.ctx.store.notify_enabled(n[0]))

    def set(self, user: str, on: bool | None) -> Reply:
        """`/promote notify on|off`, or without a word, which it is now."""
        store = self.ctx.store
        if on is not None:
            store.set_notify(user, on, self.ctx.clock())
        enabled = store.notify_enabled(user)
        if enabled:
            return Reply(
                "You get direct messages from promote-bot: when your requests are decided or "
                "end, and when one waits for your approval. Stop them with `/promote notify off`."
            )
        return Reply(
            "You get no direct messages from promote-bot (release messages and their threads "
            "still say everything). Have them again with `/promote notify on`."
        )

    # --- delivering --------------------------------------------------------------------

    async def deliver_due(self) -> int:
        """Send the notices owed now (a bounded batch); how many were sent."""
        sent = 0
        for record in self.ctx.store.notices_due(self.ctx.clock(), PER_RUN):
            try:
                sent += await self._deliver(record)
            except StoreError:
                raise  # the store is down: said once by the scheduler
            except Exception:  # one notice's bug must not hold up every other one
                log.exception("sending direct message %s failed", record.key)
        return sent

    async def _deliver(self, record: NoticeRecord) -> bool:
        ctx = self.ctx
        store, now = ctx.store, ctx.clock()
        request = store.get(record.request_id)
        view = "its request is gone" if request is None else self.view(record, request)
        if view is None:
            return False  # not yet: its release message is not posted
        held_until = now + CLAIM
        claim = store.claim_notice(record.key, now, held_until)
        if claim is None:
            return False  # another process has it, or it is not due after all
        try:
            if claim == "check" and await ctx.chat.find_notice(
                record.user, record.key, record.created_at
            ):  # an earlier try did reach them: no second one
                log.info("direct message %s did reach %s", record.key, record.user)
                store.notice_sent(record.key, ctx.clock())
                return True
            if isinstance(view, str):
                store.notice_dropped(record.key, now, view)
                log.info("direct message %s not sent: %s", record.key, view)
                return False
            await ctx.chat.post_notice(view)
        except ChatError as exc:
            self._failed(record, claim, held_until, exc)
            return False
        store.notice_sent(record.key, ctx.clock())
        return True

    def _failed(
        self, record: NoticeRecord, claim: str, held_until: datetime, exc: ChatError
    ) -> None:
        store, now = self.ctx.store, self.ctx.clock()
        if exc.gone:  # a person Slack can't reach (deactivated, a bot): never sendable
            store.notice_dropped(record.key, now, str(exc))
            log.warning("direct message %s dropped: %s", record.key, exc)
            return
        if now - record.created_at >= GIVE_UP:
            store.notice_dropped(record.key, now, f"not delivered within a day: {exc}")
            log.error("direct message %s dropped after a day of failures: %s", record.key, exc)
            return
        delay = min(2.0 ** (record.attempts + 1), BACKOFF_CAP)
        wait = timedelta(seconds=max(delay, exc.retry_after or 0.0))
        if exc.maybe_done or claim == "check":  # never sent twice: looked for first
            store.notice_uncertain(record.key, held_until, now + max(SETTLE, wait))
        else:
            store.notice_retry(record.key, held_until, lambda attempts: now + wait)
        if record.attempts == 0:
            log.warning("Slack did not take direct message %s (%s); trying again", record.key, exc)

    def view(self, record: NoticeRecord, request: Request) -> NoticeView | str | None:
        """The message `record` stands for, or why it is not to be sent (a str), or None when
        it can't be sent yet."""
        ctx = self.ctx
        if not ctx.store.notify_enabled(record.user):
            return "they turned direct messages off"
        if record.event == WAITING:
            why = self._not_waiting(record.user, request)
            if why:
                return why
            if request.message_ts is None:
                return None
        link = ctx.chat.link(request.channel, request.message_ts) if request.message_ts else None
        return notice_view(record, request, link)

    def _not_waiting(self, user: str, request: Request) -> str | None:
        """Why `request` no longer waits for `user`'s approval, if it doesn't."""
        rules = self.ctx.rules
        if request.state is not State.PENDING or self.ctx.clock() >= request.expires_at:
            return f"#{request.id} no longer waits for approval ({request.state.value})"
        if user in request.approvers:
            return f"they approved #{request.id} already"
        if not authz.can_approve(rules.role_map, rules.policy_of(request), request, user):
            return f"they can no longer approve #{request.id}"
        return None


def notice_view(record: NoticeRecord, request: Request, link: str | None) -> NoticeView:
    """The direct message for `record`'s event, from the request as it is stored, in the core's
    markup: what people and providers said is escaped here, once (`markup.literal`). Pure."""
    event, number = record.event, f"#{request.id}"
    yours = f"Your request {number}"
    outcome = request.outcome
    base = {
        "key": notice_key(request.id, record.user, event),
        "user": record.user,
        "request_id": request.id,
        "title": literal(request.action.title),
        "target": literal(request.action.target),
        "requester": request.requester,
        "link": link,
    }
    if event == WAITING:
        return NoticeView(
            **base,
            emoji="⏳",
            lead=f"{number} waits for your approval",
            by=None,
            label="🚨 Emergency" if request.emergency else None,
            detail=_said(request.emergency),
            expires=request.expires_at,
        )
    if event.startswith(APPROVED):
        approver = event.removeprefix(APPROVED)
        said = next((a.comment for a in request.approvals if a.user == approver), None)
        return NoticeView(
            **base,
            emoji="👍",
            lead=f"{yours} was approved",
            by=approver,
            label="Comment" if said else None,
            detail=_said(said),
        )
    if event in ("rejected", "cancelled"):
        return NoticeView(
            **base,
            emoji="🚫",
            lead=f"{yours} was {event}",
            by=request.decided_by,
            label="Reason" if request.reason else None,
            detail=_said(request.reason),
        )
    if event.startswith(HELD):
        held = request.timing.held if request.timing else None  # the core's markup already
        return NoticeView(
            **base,
            emoji="⏸",
            lead=f"{yours} did not run when its time came",
            by=None,
            label="Why" if held else None,
            detail=held,
        )
    if event == "expired":
        return NoticeView(**base, emoji="⌛", lead=f"{yours} {expired_words(request)}", by=None)
    lead = {
        "succeeded": (f"{yours} succeeded", "✅"),
        "failed": (f"{yours} failed", "❌"),
    }.get(event, (f"{yours} ended with its outcome unknown", "⚠️"))
    return NoticeView(
        **base,
        emoji=lead[1],
        lead=lead[0],
        by=None,
        label="Outcome" if outcome else None,
        detail=_said(outcome.headline) if outcome else None,
        check=_said(outcome.check) if outcome else None,
    )


def _said(text: str | None) -> str | None:
    return literal(text) if text else None
