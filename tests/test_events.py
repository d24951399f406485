"""Outgoing events: each request's milestones as CDEvents, signed, to the receivers of
`[[notify]]`, from the store's outbox; a local HTTP receiver (real HTTP on loopback) that fails
twice gets each event once, also across a restart; two processes never send one twice."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pytest
from aiohttp import web

from bot.config import ConfigError, parse_config
from bot.core import cdevents
from bot.core.context import Context
from bot.core.model import Outcome, State
from bot.core.outbox import Outbox, backoff
from bot.core.rules import Rules
from bot.store import AnyStore
from bot.transports.events import HttpEventSender
from bot.web import WebServer
from tests.conftest import ALICE, BOB, CONFIG, World
from tests.history import NOW, PROMOTE, run, undo

Factory = Callable[[], AnyStore]
SECRET = "receiver-secret-0123456789"
SECRET_ENV = "PROMOTE_BOT_TEST_RECEIVER_SECRET"  # the config names it; the secret is not in it


@pytest.fixture(autouse=True)
def _secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_ENV, SECRET)


@dataclass
class Receiver:
    """A team's own receiver of events: answers with `statuses` in turn (then 204), and keeps
    every delivery it got (headers, raw body, what it answered)."""

    statuses: list[int] = field(default_factory=list)
    got: list[tuple[dict[str, str], bytes, int]] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        status = self.statuses.pop(0) if self.statuses else 204
        self.got.append((dict(request.headers), body, status))
        return web.Response(status=status)

    def taken(self) -> list[dict]:
        """The events it took (answered 2xx), in order."""
        return [json.loads(body) for _, body, status in self.got if status < 300]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    app = web.Application()
    app.router.add_post("/events", r.handle)
    async with WebServer(app) as server:
        r.url = f"{server.url}/events"
        yield r


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


class _NoChat:
    def link(self, channel: str, ts: str) -> str | None:
        return f"https://test.slack.com/archives/{channel}/p{ts.replace('.', '')}"


def _outbox(store: AnyStore, rules: Rules, clock: Clock, sender: HttpEventSender) -> Outbox:
    ctx = Context(rules, store, {}, _NoChat(), clock)  # type: ignore[arg-type]
    return Outbox(ctx, sender)


def _rules(url: str, **extra: object) -> Rules:
    table = {"url": url, "secret_env": SECRET_ENV, **extra}
    config = {
        "roles": {"rm": ["bundle:publish"]},
        "members": {ALICE: ["rm"]},
        "znyx": {"org": "org-test", "projects": {"guardrails": "proj-guardrails"}},
        "notify": [table],
    }
    return parse_config(config)


def _verified(headers: dict[str, str], body: bytes) -> bool:
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(headers[cdevents.SIGNATURE_HEADER], expected)


async def test_a_receiver_that_fails_twice_gets_each_event_once(
    store_factory: Factory, receiver: Receiver
) -> None:
    store = store_factory()
    clock = Clock(NOW)
    rules = _rules(receiver.url)
    sender = HttpEventSender()
    try:
        promoted = run(store, PROMOTE, NOW - timedelta(hours=1), approvals=[NOW], ended=NOW)
        outbox = _outbox(store, rules, clock, sender)
        receiver.statuses = [500, 503] * 3  # each of the three events: two failures
        assert await outbox.run() == 0  # requested, approved, succeeded: all refused once
        assert len(receiver.got) == 3
        assert await outbox.run() == 0  # nothing is due before its backoff
        assert len(receiver.got) == 3
        # A restart: another process, with its own connection, picks the outbox up.
        clock.at += timedelta(seconds=backoff(0, None))
        outbox = _outbox(store_factory(), rules, clock, sender)
        assert await outbox.run() == 0
        assert len(receiver.got) == 6
        clock.at += timedelta(seconds=backoff(1, None))
        assert await outbox.run() == 3  # the third try of each is taken
        clock.at += timedelta(hours=1)
        assert await outbox.run() == 0  # and never sent again
    finally:
        await sender.aclose()
    assert len(receiver.got) == 9
    taken = receiver.taken()
    assert [e["context"]["type"] for e in taken] == [
        "dev.cdevents.pipelinerun.queued.0.3.0",
        "dev.cdevents.taskrun.finished.0.3.0",
        "dev.cdevents.service.deployed.0.3.0",
    ]
    assert len({e["context"]["id"] for e in taken}) == 3
    # Every try of one event is the same bytes, id and signature; every one verifies.
    by_id: dict[str, set[bytes]] = {}
    for headers, body, _ in receiver.got:
        assert _verified(headers, body)
        assert headers["ce-specversion"] == "1.0"
        assert headers["Content-Type"].startswith("application/json")
        by_id.setdefault(headers["ce-id"], set()).add(body)
    assert len(by_id) == 3 and all(len(bodies) == 1 for bodies in by_id.values())
    deployed = taken[-1]
    assert deployed["context"]["timestamp"] == "2026-11-22T12:00:00Z"
    assert deployed["subject"]["id"] == "znyx:guardrails"
    assert deployed["subject"]["content"]["environment"]["id"] == "znyx:guardrails:prod"
    assert deployed["subject"]["content"]["artifactId"] == (
        f"pkg:generic/guardrails@{promoted}?policy_hash=sha256%3A" + "a" * 64
    )
    assert deployed["customData"]["request"] == promoted
    assert store.event_counts() == {("127.0.0.1", "sent"): 3}


async def test_two_processes_never_send_one_event_twice(
    store_factory: Factory, receiver: Receiver
) -> None:
    rules = _rules(receiver.url, events=["succeeded", "rolled back"])
    first = store_factory()
    done = run(first, PROMOTE, NOW - timedelta(hours=2), ended=NOW - timedelta(hours=1))
    run(first, undo(1, "v2"), NOW - timedelta(minutes=30), ended=NOW, rolls_back=done)
    sender = HttpEventSender()
    try:
        outboxes = [_outbox(store_factory(), rules, Clock(NOW), sender) for _ in range(4)]
        for o in outboxes:
            o.fan_out()  # each process fans out what it sees: each event is owed once
        sent = await asyncio.gather(*(o.deliver_due() for o in outboxes))
    finally:
        await sender.aclose()
    assert sum(sent) == 2
    types = sorted(e["context"]["type"] for e in receiver.taken())
    assert types == ["dev.cdevents.service.deployed.0.3.0", "dev.cdevents.service.rolledback.0.3.0"]
    assert len(receiver.got) == 2  # only the milestones asked for: no requested, no approved


async def test_a_receiver_that_says_gone_or_never_takes_them_is_given_up(
    store_factory: Factory, receiver: Receiver
) -> None:
    store = store_factory()
    clock = Clock(NOW)
    run(store, PROMOTE, NOW, ended=NOW + timedelta(minutes=1))
    sender = HttpEventSender()
    try:
        outbox = _outbox(store, _rules(receiver.url, events=["succeeded"]), clock, sender)
        receiver.statuses = [429] * 100
        await outbox.run()
        clock.at += timedelta(days=1, minutes=2)
        await outbox.run()  # a day of refusals: dropped, not tried again
        assert store.event_counts() == {("127.0.0.1", "dropped"): 1}
        run(store, PROMOTE, clock.at, ended=clock.at + timedelta(minutes=1))
        receiver.statuses = [410]
        await outbox.run()
        assert store.event_counts() == {("127.0.0.1", "dropped"): 2}
        # Milestones recorded while nobody listens are done with, not kept for later.
        run(store, PROMOTE, clock.at, ended=clock.at + timedelta(minutes=1))
        quiet = _outbox(store, parse_config({"roles": {}}), clock, sender)
        assert quiet.fan_out() == 0 and store.milestones(10) == []
    finally:
        await sender.aclose()
    assert len(receiver.got) == 3


def test_each_milestone_is_a_cdevent_of_its_own_shape() -> None:
    from bot.core.model import Approval, Request

    request = Request(
        id=7,
        action=PROMOTE,
        requester=ALICE,
        channel="C1",
        state=State.REJECTED,
        created_at=NOW,
        updated_at=NOW,
        expires_at=NOW,
        decided_by=BOB,
        reason="wait for the fix",
        approvals=[Approval(user=BOB, at=NOW, comment="ok by me")],
    )
    source = "/promote-bot/abcd1234"
    asked = cdevents.cdevent("requested", request, NOW, source=source, link="https://x/p1")
    assert asked is not None
    assert asked["context"] == {
        "specversion": "0.5.1",
        "id": cdevents.event_id(source, 7, "requested"),
        "source": source,
        "type": "dev.cdevents.pipelinerun.queued.0.3.0",
        "timestamp": "2026-11-22T12:00:00Z",
    }
    assert asked["subject"] == {
        "id": "requests/7",
        "source": source,
        "content": {"pipelineName": "znyx:guardrails:prod", "url": "https://x/p1"},
    }
    approved = cdevents.cdevent(f"approved:{BOB}", request, NOW, source=source)
    assert approved is not None and approved["subject"]["content"] == {
        "taskName": "approval",
        "pipelineRun": {"id": "requests/7", "source": source},
        "outcome": "success",
    }
    assert approved["customData"]["comment"] == "ok by me"
    rejected = cdevents.cdevent("rejected", request, NOW, source=source)
    assert rejected is not None and rejected["subject"]["content"]["outcome"] == "cancel"
    assert rejected["subject"]["content"]["errors"] == f"rejected by {BOB}: wait for the fix"
    failed = request.model_copy(
        update={"state": State.FAILED, "outcome": Outcome(state="failed", headline="no")}
    )
    event = cdevents.cdevent("failed", failed, NOW, source=source)
    assert event is not None and event["subject"]["content"]["outcome"] == "failure"
    assert cdevents.cdevent("executing", request, NOW, source=source) is None
    # The id is the same for every try and every receiver, and differs per milestone.
    assert cdevents.event_id(source, 7, "requested") != cdevents.event_id(source, 7, "failed")


def test_receivers_in_the_config() -> None:
    def problem(**table: object) -> str:
        with pytest.raises(ConfigError) as caught:
            _rules(**table)  # type: ignore[arg-type]
        return str(caught.value)

    assert "over http only to a loopback address" in problem(url="http://10.1.2.3/hook")
    assert "is not an https:// URL" in problem(url="ftp://example.com/hook")
    assert "no user or password" in problem(url="https://me:pw@example.com/hook")
    assert "unknown event 'deployed'" in problem(url="https://example.com/h", events=["deployed"])
    assert "matches no target" in problem(url="https://example.com/h", targets=["whop:*"])
    assert "the config file holds no secret" in problem(url="https://example.com/h", secret="x")
    assert "PROMOTE_BOT_NO_SUCH_VARIABLE is not set" in problem(
        url="https://example.com/h", secret_env="PROMOTE_BOT_NO_SUCH_VARIABLE"
    )
    [ok] = _rules("https://hooks.example.com/h", events=["rolled back"]).notify
    assert ok.name == "hooks.example.com" and ok.events == {"rolled_back"}
    assert SECRET not in repr(ok)  # nor, so, in any log line


@pytest.fixture
def config_text(receiver: Receiver) -> str:
    table = f'name = "team"\nurl = "{receiver.url}"\nsecret_env = "{SECRET_ENV}"\n'
    return CONFIG + "\n[[notify]]\n" + table


async def test_a_promotion_through_slack_sends_its_milestones_after_the_fact(
    world: World, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    await world.requested(user=ALICE)
    assert receiver.got == []  # nothing on the ack path: the `events` job sends them
    await world.sender.click("promote_approve", 1, BOB)
    await world.slack.wait_for(lambda s: len(world.thread()) == 1)
    assert receiver.got == []
    await world.bot.workflow.outbox.run()
    kinds = [e["customData"]["milestone"] for e in receiver.taken()]
    assert kinds == ["requested", "approved", "succeeded"]
    assert receiver.taken()[0]["customData"]["link"].startswith("https://test.slack.com/archives/")
    # Reloaded like the rest of the config: a receiver removed gets nothing more.
    config = world.bot.settings.promote_bot_config
    config.write_text(CONFIG)
    with caplog.at_level(logging.INFO, logger="promote-bot.config"):
        assert world.bot.live.reload()
    host = receiver.url.split("/")[2]
    assert f"receivers removed team ({host}, 9 events)" in caplog.text  # by its host only
    assert SECRET not in caplog.text and "/events" not in caplog.text
    await world.requested("znyx guardrails dev", user=ALICE)
    await world.bot.workflow.outbox.run()
    assert len(receiver.got) == 3


async def test_an_unknown_promotion_found_succeeded_later_is_deployed_then(
    store_factory: Factory, receiver: Receiver
) -> None:
    """Issue 26's late success (the settle job or a webhook finds an `unknown` promotion done):
    the receiver got the pipeline run finished in error, then gets the deployment, once."""
    store = store_factory()
    clock = Clock(NOW)
    sender = HttpEventSender()
    try:
        outbox = _outbox(
            store, _rules(receiver.url, events=["unknown", "succeeded"]), clock, sender
        )
        asked = NOW - timedelta(hours=1)
        unknown = run(store, PROMOTE, asked, approvals=[asked], ended=NOW, state=State.UNKNOWN)
        assert await outbox.run() == 1
        found = Outcome(
            state="succeeded",
            headline="Znyx shows it",
            installed={"version": "7", "policy_hash": "sha256:" + "b" * 64},
        )
        clock.at = NOW + timedelta(minutes=20)
        assert store.transition(
            unknown, [State.UNKNOWN], State.SUCCEEDED, at=clock.at, outcome=found
        )
        assert await outbox.run() == 1
        assert await outbox.run() == 0
    finally:
        await sender.aclose()
    first, then = receiver.taken()
    assert first["context"]["type"] == "dev.cdevents.pipelinerun.finished.0.3.0"
    assert first["subject"]["content"]["outcome"] == "error"
    assert then["context"]["type"] == "dev.cdevents.service.deployed.0.3.0"
    assert then["context"]["timestamp"] == "2026-11-22T12:20:00Z"
    assert then["subject"]["content"]["artifactId"] == (
        "pkg:generic/guardrails@7?policy_hash=sha256%3A" + "b" * 64
    )
