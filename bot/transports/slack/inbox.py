"""Work acknowledged to Slack is recorded before the ack, so it is never lost.

Slack gives an app three seconds, so the bot acks first and works after. If the process dies
in between (during a preview read, say), the work would vanish while the person was told it
was accepted. So the ack path records each command and click in the store (one small insert,
keyed by Slack's trigger id, which also drops redeliveries); the work after the ack claims it
with a lease, renews the lease while it works, and marks it done. A process that finds work
nobody holds any more, received a while ago, does it instead and answers at its response_url.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from slack_bolt.async_app import AsyncRespond

from bot.core.ports import StoreError
from bot.core.workflow import Reply, Workflow

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3  # a payload that took a process down this often is answered, not retried
GRACE = timedelta(seconds=5)  # how old unclaimed work must be before another process takes it

Decide = Callable[[str, int], Awaitable[Reply | None]]


def store_trouble(exc: StoreError) -> str:
    return (
        "promote-bot can't use its database right now, so nothing was done "
        f"({exc}). Try again in a few minutes; the people running the bot have been told."
    )


class Inbox:
    def __init__(self, workflow: Workflow) -> None:
        self.workflow = workflow
        self.clicks: dict[str, Decide] = {}  # action_id → what a click on it does
        self._store_failing = False

    def on_click(self, action_id: str, decide: Decide) -> None:
        self.clicks[action_id] = decide

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
        respond = respond or AsyncRespond(response_url=payload.get("response_url"))
        try:
            async with wf.renewing(lambda until: wf.store.inbox_renew(key, wf.owner, until)):
                if item["attempts"] > MAX_ATTEMPTS:
                    log.error("gave up on %s %s after %s attempts", item["kind"], key, MAX_ATTEMPTS)
                    await tell(respond, Reply("promote-bot could not handle this; it is logged."))
                else:
                    await tell(respond, await self._do(item["kind"], payload))
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

    async def _do(self, kind: str, payload: dict[str, Any]) -> Reply | None:
        wf = self.workflow
        user = payload["user"]
        if kind == "command":
            checked = wf.check(user, payload.get("text", ""))
            if isinstance(checked, Reply):
                return checked
            return await wf.run(user, checked, payload["channel"])
        decide = self.clicks.get(kind)
        if decide is None:
            return Reply("That button is not one promote-bot knows.")
        if payload.get("request_id") is None:
            return Reply("That button carries no request number.")
        return await decide(user, int(payload["request_id"]))

    async def recover(self) -> int:
        """Do acknowledged work that nobody holds any more (its process died); how many."""
        wf = self.workflow
        now = wf.clock()
        keys = wf.store.inbox_waiting(now, received_before=now - GRACE)
        for key in keys:
            log.warning("doing acknowledged work %s that a stopped process left", key)
            await self.handle(key)
        return len(keys)

    def store_failed(self, exc: StoreError) -> None:
        """Log a failing store once, not once per command."""
        if not self._store_failing:
            self._store_failing = True
            log.error("the database is failing: %s", exc)


async def tell(respond: AsyncRespond, reply: Reply | None) -> None:
    """An answer only the person who acted sees."""
    if reply is None:
        return
    try:
        await respond(text=reply.text, response_type="ephemeral", replace_original=False)
    except Exception as exc:  # a dead response_url must not hide the work that was done
        log.warning("could not answer at the response_url: %s", type(exc).__name__)
