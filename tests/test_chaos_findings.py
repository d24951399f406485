"""What the chaos run (`python -m bench.chaos`) found: real `promote-bot serve` processes on one
database, one of them killed with SIGKILL in the middle of its work.

- A Slack write that a process had in flight when it was killed may still be carried out by
  Slack after another replica has brought the message up to date: the message must be looked at
  again once that can no longer happen, as it is after a timeout. (The chaos run saw a failed
  request's message go on showing "Waiting for approval" with live buttons, for good.)
- A command whose process was killed after it had made its request, but before it had marked
  the command done, is done again by another replica: a request that was rejected meanwhile is
  asked for again."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from bot.cli import SLACK_TIMEOUT_SECONDS as SLACK_TIMEOUT
from bot.core.delivery import MESSAGE_SETTLE
from bot.core.model import State
from bot.store import SqliteStore
from bot.transports.slack.blocks import APPROVE, REJECT
from tests.conftest import ALICE, BOB, DAVE, Bot, Fakes, block_text, buttons, serve_env

LATE = 8.0  # seconds before the fake Slack carries out the dead process's update


def _two_approvals_for_prod(config: Path) -> None:
    config.write_text(config.read_text() + '\n[policies."znyx:*:prod"]\napprovals = 2\n')


async def test_an_update_that_lands_after_its_process_was_killed_is_undone(
    tmp_path: Path, fakes: tuple[Fakes, dict[str, str]]
) -> None:
    f, urls = fakes
    # One is killed before it marks its click done: with a long lease, two does not do the
    # click again (and redraw the message) while this test looks. Two approvals are needed,
    # so the first one's update ("Waiting for approval (1 of 2)") is one that a kill can
    # leave in flight.
    env = serve_env(tmp_path, urls, PROMOTE_BOT_LEASE_SECONDS="300")
    _two_approvals_for_prod(Path(env["PROMOTE_BOT_CONFIG"]))
    one, two = await Bot.start(env, urls["slack"]), await Bot.start(env, urls["slack"])
    store = SqliteStore(tmp_path / "shared.db")
    try:
        await one.sender.command("znyx guardrails staging", ALICE)
        await f.slack.wait_for(lambda s: bool(s.release_messages(1)), within=10)
        # The update that follows the first approval lands only LATE s on.
        f.slack.fail("chat.update", late=LATE, times=1)
        await one.sender.click(APPROVE, 1, BOB)
        await f.slack.wait_for(lambda s: bool(s.calls_to("chat.update")), within=10)
        await one.stop(signal.SIGKILL)  # killed while Slack still holds its update
        assert [a.user for a in store.get(1).approvals] == [BOB]  # type: ignore[union-attr]

        await two.sender.click(APPROVE, 1, DAVE)
        # Two shows the outcome (its final update, then the reply in the thread) ...
        await f.slack.wait_for(
            lambda s: any("thread_ts" in c.args for c in s.channel_posts()), within=15
        )
        await f.slack.wait_for(lambda s: bool(s.calls_to("late chat.update")), within=15)
        request = store.get(1)
        assert request is not None and request.state is State.SUCCEEDED
        # ... and the dead process's update lands over it: Approve and Reject are back.
        [shown] = f.slack.release_messages(1)
        assert {APPROVE, REJECT} <= {a for a, _ in buttons(shown["blocks"])}

        # The dead process recorded its update before sending it: once Slack's timeout (10 s)
        # and the settle time have passed since, a run of the deliver job (every 2 s) brings
        # the message back. Two's own writes, made while that one could still land, push the
        # look past theirs (a second or so).
        # Once that look's write is answered, nothing is owed any more.
        async with asyncio.timeout(SLACK_TIMEOUT + MESSAGE_SETTLE.total_seconds() + 8):
            while store.get(1).msg_recheck_at is not None:  # type: ignore[union-attr]  # noqa: ASYNC110
                await asyncio.sleep(0.2)
        [shown] = f.slack.release_messages(1)
        assert not {APPROVE, REJECT} & {a for a, _ in buttons(shown["blocks"])}
        assert "Promoted" in block_text(shown["blocks"])
    finally:
        await one.stop()
        await two.stop()
        store.close()


async def test_a_command_done_again_after_a_kill_does_not_ask_again(
    tmp_path: Path, fakes: tuple[Fakes, dict[str, str]]
) -> None:
    """The chaos run saw #9 rejected, then its process killed while it was still on the
    command that made #9 (an update of the release message hung): the other replica did the
    command again and a new request #17 for the same promotion waited for approval. A command
    is marked done only at the end of all its work (bot/transports/slack/inbox.py `work_on`),
    so anything that kills the process after the request exists repeats it."""
    f, urls = fakes
    env = serve_env(tmp_path, urls, PROMOTE_BOT_LEASE_SECONDS="1")
    one, two = await Bot.start(env, urls["slack"]), await Bot.start(env, urls["slack"])
    store = SqliteStore(tmp_path / "shared.db")
    try:
        # Slack posts the release message but the answer is lost; looking for it hangs (one
        # waits 10 s), so one is still on the command.
        f.slack.fail("chat.postMessage", reset=True, times=1)
        f.slack.fail("conversations.history", hang=30.0, status=500, times=1)
        await one.sender.command("znyx guardrails staging", ALICE)
        await f.slack.wait_for(lambda s: bool(s.calls_to("conversations.history")), within=10)
        before = len(f.slack.views)
        await two.sender.click(REJECT, 1, BOB)
        await f.slack.wait_for(lambda s: len(s.views) > before, within=10)
        await two.sender.submit(f.slack.views[-1], BOB, "not today")
        async with asyncio.timeout(10):
            while store.get(1).state is not State.REJECTED:  # type: ignore[union-attr]  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        await one.stop(signal.SIGKILL)  # still on the command: its update has not answered

        await asyncio.sleep(14.0)  # past the grace, the lease and a run of the job (every 10 s)
        assert [r.id for r in store.in_states(list(State))] == [1]  # asked once, rejected once
    finally:
        await one.stop()
        await two.stop()
        store.close()
