"""Work acknowledged to Slack is recorded before the ack, so it is never lost.

Slack gives an app three seconds, so the bot acks first and works after. If the process dies
in between (during a preview read, say), the work would vanish while the person was told it
was accepted. So the ack path records each command and click in the store (one small insert,
keyed by Slack's trigger id, which also drops redeliveries); the work after the ack claims it
with a lease, renews the lease while it works, and marks it done. A process that finds work
nobody holds any more, received a while ago, does it instead and answers at its response_url.
Work done again that way asks for nothing twice: a command (or a Roll back click) is the
`origin` of the request it makes, recorded with it, and carries on from that request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from typing import Any, Literal

import aiohttp
from slack_bolt.async_app import AsyncRespond
from slack_sdk.webhook import WebhookResponse
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot.core.markup import literal
from bot.core.model import Reply
from bot.core.ports import StoreError
from bot.core.workflow import Workflow
from bot.transports.slack.blocks import release_message_of

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3  # a payload that took a process down this often is answered, not retried
GRACE = timedelta(seconds=5)  # how old unclaimed work must be before another process takes it

Decide = Callable[[str, int], Awaitable[Reply | None]]
# A click that asks for a request (Roll back): who, which request, and the click's inbox key
# (`origin`), so the click done again asks for nothing twice.
DecideOnce = Callable[[str, int, str], Awaitable[Reply | None]]
# A form's decision: who, which request, and what they typed in it (a reason, a comment).
DecideSaying = Callable[[str, int, str], Awaitable[Reply | None]]


def store_trouble(exc: StoreError) -> str:
    return (
        f"promote-bot can't use its database right now ({literal(str(exc))}). Try again in a "
        "few minutes; "
        "if this was an approval that may have started a promotion, check `/promote status` "
        "first. The people running the bot have been told."
    )


def click_payload(body: dict[str, Any]) -> dict[str, Any]:
    """What the work after a click's ack needs, read defensively from any payload."""

    def part(key: str) -> dict[str, Any]:
        value = body.get(key)
        return value if isinstance(value, dict) else {}

    actions = body.get("actions")
    action = (
        actions[0] if isinstance(actions, list) and actions and isinstance(actions[0], dict) else {}
    )
    value = str(action.get("value", ""))
    container = part("container")
    return {
        "user": part("user").get("id"),
        "request_id": int(value) if value.isdecimal() and len(value) <= 12 else None,
        "response_url": body.get("response_url"),
        "team": part("team").get("id") or part("user").get("team_id"),
        "app": body.get("api_app_id"),
        "channel": part("channel").get("id") or container.get("channel_id"),
        "message_ts": part("message").get("ts") or container.get("message_ts"),
        "message_bot": part("message").get("bot_id"),
        "message_thread": part("message").get("thread_ts"),
        # Whose release message the clicked message is, by its own blocks (None: nobody's).
        "message_shows": release_message_of(part("message").get("blocks")),
    }


class Inbox:
    def __init__(
        self,
        workflow: Workflow,
        identity: Mapping[str, Any] | None = None,
        tell_privately: Callable[[str, str, str], Awaitable[None]] | None = None,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        """`identity`: this installation (auth.test: team_id, app_id, bot_id); clicks from
        elsewhere are refused. `tell_privately(channel, user, text)`: how to answer someone
        whose response_url failed (chat.postEphemeral). `session`: the one answers at
        response URLs are sent on (its connections kept open and used again), if given."""
        self.workflow = workflow
        self.session = session
        self.identity = identity or {}
        self.tell_privately = tell_privately
        self.clicks: dict[str, Decide] = {}  # action_id → what a click on it does
        self.asking: dict[str, DecideOnce] = {}  # action_id → the request a click asks for
        self.forms: dict[str, DecideSaying] = {}  # callback_id → what submitting it does
        self._store_failing = False

    def on_click(self, action_id: str, decide: Decide) -> None:
        self.clicks[action_id] = decide

    def on_asking_click(self, action_id: str, decide: DecideOnce) -> None:
        """A click that asks for a request: `decide` is given the click's key too."""
        self.asking[action_id] = decide

    def on_submit(self, callback_id: str, decide: DecideSaying) -> None:
        self.forms[callback_id] = decide

    def responder(self, response_url: str | None) -> AsyncRespond:
        """Bolt's `respond` for `response_url`, on the inbox's session if it has one."""
        if self.session is None:
            return AsyncRespond(response_url=response_url)
        return SessionRespond(response_url, self.session)

    def accept(self, key: str, kind: str, payload: dict[str, Any]) -> bool:
        """Record acknowledged work (before the ack); False if Slack delivered it before."""
        return self.workflow.store.inbox_put(key, kind, payload, self.workflow.clock())

    async def handle(self, key: str, respond: AsyncRespond | None = None) -> None:
        """Do the work recorded under `key`, unless it is done or another process has it."""
        async with self.workflow.working():
            await self.work_on(key, respond)

    async def work_on(self, key: str, respond: AsyncRespond | None = None) -> None:
        """`handle` for a caller that already holds `workflow.working()` (the work pool)."""
        wf = self.workflow
        now = wf.clock()
        item = wf.store.inbox_claim(key, wf.owner, now, now + wf.lease)
        if item is None:
            return  # a redelivery, or another process is on it
        payload = item["payload"]
        respond = respond or self.responder(payload.get("response_url"))
        try:
            with wf.leases.hold(lambda until: wf.store.inbox_renew(key, wf.owner, until)):
                if item["attempts"] > MAX_ATTEMPTS:
                    log.error("gave up on %s %s after %s attempts", item["kind"], key, MAX_ATTEMPTS)
                    reply = Reply("promote-bot could not handle this; it is logged.")
                else:
                    reply = await self._do(key, item["kind"], payload)
                await self.answer(respond, payload, reply)
        except asyncio.CancelledError:  # shutting down past its deadline: left for another
            wf.store.inbox_renew(key, wf.owner, wf.clock())
            raise
        except StoreError as exc:
            self.store_failed(exc)
            await tell(respond, Reply(store_trouble(exc)))
            return  # left for a later attempt once the store answers again
        except Exception:
            log.exception("%s %s failed", item["kind"], key)
            await tell(respond, Reply("promote-bot hit an internal error; it has been logged."))
        wf.store.inbox_done(key, wf.clock())
        if self._store_failing:
            self._store_failing = False
            log.warning("the database answers again")

    async def answer(
        self, respond: AsyncRespond, payload: dict[str, Any], reply: Reply | None
    ) -> None:
        """At the response_url; if that fails, by chat.postEphemeral to the same person in
        the same channel; if that fails too, a log line naming the request."""
        if reply is None:
            return
        # A form's submission has no response_url: its answer goes by chat.postEphemeral.
        if payload.get("response_url") and await tell(respond, reply):
            return
        channel, user = payload.get("channel"), payload.get("user")
        if self.tell_privately is not None and channel and user:
            try:
                await self.tell_privately(channel, user, reply.text)
                return
            except Exception as exc:
                log.warning("chat.postEphemeral failed too: %s", exc)
        log.error(
            "an answer for %s about request %s could not be delivered: %s",
            user,
            payload.get("request_id", "(a command)"),
            reply.text[:200],
        )

    async def _do(self, key: str, kind: str, payload: dict[str, Any]) -> Reply | None:
        """Work `key` of `kind`; a command or a click that asks for a request is its origin
        (done again after its process was killed, it asks for nothing twice)."""
        wf = self.workflow
        user = payload["user"]
        if kind == "command":
            checked = wf.check(user, payload.get("text", ""))
            if isinstance(checked, Reply):
                return checked
            return await wf.run(user, checked, payload["channel"], origin=key)
        decide, form = self.clicks.get(kind), self.forms.get(kind)
        asks = self.asking.get(kind)
        what = "form" if form is not None else "button"
        if decide is None and form is None and asks is None:
            return Reply("That button is not one promote-bot knows.")
        if payload.get("request_id") is None:
            return Reply(f"That {what} carries no request number.")
        request_id = int(payload["request_id"])
        # A form's message was adopted, if it was a copy, when the form opened: known by now.
        refusal = await self.foreign(payload, request_id, copies="adopt" if form is None else "no")
        if refusal is not None:
            wf.refuse_click(user, request_id, refusal, "click" if form is None else "form")
            return Reply(f"That {what} does nothing: it came from {literal(refusal)}.")
        if form is not None:
            return await form(user, request_id, str(payload.get("text") or ""))
        if asks is not None:
            return await asks(user, request_id, key)
        assert decide is not None
        return await decide(user, request_id)

    async def foreign(
        self,
        payload: dict[str, Any],
        request_id: int,
        *,
        copies: Literal["adopt", "let through", "no"] = "adopt",
    ) -> str | None:
        """Why a click (or a form) is not for this request from this installation, or None.
        A top-level message the bot itself posted that is not a known copy of the release
        message (a retried post) is adopted as one (`copies="adopt"`); let through without
        a Web API call (a form is about to open: it is adopted once the form is open); or
        refused (a form's submission: its message was adopted when it opened). Only a message
        whose own blocks (as the click carries them) are this request's release message counts
        as a copy: a click naming #B sent from #A's message must not make #A's a copy of #B's."""
        legacy = "channel" not in payload  # recorded before clicks carried where they came from
        for key, what, ours in (
            ("team", "workspace", self.identity.get("team_id")),
            ("app", "app", self.identity.get("app_id")),
        ):
            theirs = payload.get(key)
            if ours and theirs != ours and not (legacy and theirs is None):
                return f"another {what} ({theirs or 'none named'})"
        if legacy:
            return None
        request = self.workflow.store.get(request_id)
        if request is None:
            return None  # the workflow says there is no such request
        if payload.get("channel") != request.channel:
            return f"a channel that is not #{request_id}'s"
        ts = payload.get("message_ts")
        if ts in (request.message_ts, *request.copies):
            return None
        ours = payload.get("message_bot") and payload["message_bot"] == self.identity.get("bot_id")
        thread = payload.get("message_thread")
        if ours and thread and thread == request.message_ts:
            return None  # the outcome the bot posted in the request's own thread (Roll back)
        copy = ts and ours and not thread and payload.get("message_shows") == request_id
        if copy and copies == "let through":
            return None  # a top-level copy the bot posted: adopted once the form is open
        if (
            copy
            and copies == "adopt"
            and await self.workflow.adopt(request_id, request.channel, str(ts))
        ):
            return None  # a top-level copy of the release message: kept in step from now on
        return f"a message that is not #{request_id}'s release message"

    async def recover(self, wake: Callable[[str], None] | None = None) -> int:
        """Do acknowledged work that nobody holds any more (its process died); how many.
        With `wake` (the work pool's), it is handed to the workers instead of done here, so
        housekeeping is not held up by it."""
        wf = self.workflow
        now = wf.clock()
        keys = wf.store.inbox_waiting(now, received_before=now - GRACE)
        for key in keys:
            log.warning("doing acknowledged work %s that a stopped process left", key)
            if wake is not None:
                wake(key)
            else:
                await self.handle(key)
        return len(keys)

    def store_failed(self, exc: StoreError) -> None:
        """Log a failing store once, not once per command."""
        if not self._store_failing:
            self._store_failing = True
            log.error("the database is failing: %s", exc)


class SessionRespond(AsyncRespond):
    """Bolt's `respond` as `tell` uses it, sent by slack-sdk's webhook client on one shared
    session: Bolt's own makes a session, and so a new connection (and TLS handshake), for
    every answer."""

    def __init__(self, response_url: str | None, session: aiohttp.ClientSession) -> None:
        super().__init__(response_url=response_url)
        self.session = session

    async def __call__(  # type: ignore[override]
        self,
        text: str = "",
        *,
        response_type: str | None = None,
        replace_original: bool | None = None,
    ) -> WebhookResponse:
        if self.response_url is None:
            raise ValueError("respond is unsupported here as there is no response_url")
        client = AsyncWebhookClient(self.response_url, session=self.session)
        return await client.send(
            text=text, response_type=response_type, replace_original=replace_original
        )


async def tell(respond: AsyncRespond, reply: Reply | None) -> bool:
    """An answer only the person who acted sees, at the response_url; False if it failed."""
    if reply is None:
        return True
    try:
        response = await respond(text=reply.text, response_type="ephemeral", replace_original=False)
    except Exception as exc:  # a dead response_url must not hide the work that was done
        log.warning("could not answer at the response_url: %s", type(exc).__name__)
        return False
    status = getattr(response, "status_code", 200)
    if status >= 400:
        log.warning("the response_url answered %s", status)
        return False
    return True
