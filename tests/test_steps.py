"""The journal of an execution's writes (bot/core/steps.py), on both stores: a step is marked
before its write goes out and its answer recorded after, so whatever takes the request up
after a crash never sends a recorded step twice, and decides a step whose answer was lost by
reading."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.core.errors import ProviderAuthError, ProviderRejected, ProviderTimeout
from bot.core.model import NewRequest, Preview
from bot.core.states import Event, destination, sources
from bot.core.steps import LeaseLost, Steps, StepUncertain
from bot.providers.znyx import ZnyxPromote
from bot.store import AnyStore, SqliteStore, open_any

Factory = Callable[[], AnyStore]
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
ACTION = ZnyxPromote(org_id="o", project="guardrails", project_id="p", source_env="staging")


def _request(store: AnyStore) -> int:
    new = NewRequest(
        ACTION,
        requester="UALICE",
        channel="C1",
        preview=Preview(expect={"source": "x"}),
        created_at=NOW,
        expires_at=NOW + timedelta(hours=1),
    )
    return store.create_request(new).id


class Provider:
    """Three writes in a row, as an App Store review submission is; counts what it was sent."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.landed: set[str] = set()
        self.fail: dict[str, Exception] = {}

    def send(self, name: str) -> Callable[[], object]:
        async def write() -> dict[str, str]:
            self.sent.append(name)
            if name in self.fail:
                raise self.fail.pop(name)
            self.landed.add(name)
            return {"id": f"{name}-1"}

        return write

    def find(self, name: str) -> Callable[[], object]:
        async def read() -> dict[str, str] | None:
            return {"id": f"{name}-1", "read": "yes"} if name in self.landed else None

        return read

    async def run(self, steps: Steps) -> list[str]:
        answers = []
        for name in ("create", "add", "submit"):
            answer = await steps.write(
                name,
                self.send(name),  # type: ignore[arg-type]
                provider="Fake",
                find=self.find(name),  # type: ignore[arg-type]
            )
            answers.append(str(answer["id"]))
        return answers


def _clock() -> datetime:
    return NOW


async def test_each_step_is_recorded_and_a_replay_sends_nothing(store_factory: Factory) -> None:
    store = store_factory()
    request_id = _request(store)
    provider = Provider()
    assert await provider.run(Steps(store, request_id, _clock)) == [
        "create-1",
        "add-1",
        "submit-1",
    ]
    journal = Steps.load(store_factory(), request_id, _clock)  # another process, later
    assert [(r.name, r.done, r.result) for r in journal] == [
        ("create", True, {"id": "create-1"}),
        ("add", True, {"id": "add-1"}),
        ("submit", True, {"id": "submit-1"}),
    ]
    assert await provider.run(journal) == ["create-1", "add-1", "submit-1"]
    assert provider.sent == ["create", "add", "submit"]  # each sent once, in all


async def test_a_crash_between_steps_carries_on_from_the_last_recorded_one(
    store_factory: Factory,
) -> None:
    store = store_factory()
    request_id = _request(store)
    provider = Provider()
    provider.fail["add"] = ProviderTimeout("Fake", "no answer")  # sent; its answer was lost
    provider.landed.add("add")  # ... and it did land
    with pytest.raises(ProviderTimeout):
        await provider.run(Steps(store, request_id, _clock))
    assert provider.sent == ["create", "add"]
    journal = Steps.load(store_factory(), request_id, _clock)
    assert [(r.name, r.done) for r in journal] == [("create", True), ("add", False)]
    # The recovery reads "add" (never sends it again), then sends only "submit".
    assert await provider.run(journal) == ["create-1", "add-1", "submit-1"]
    assert provider.sent == ["create", "add", "submit"]
    assert journal.result("add") == {"id": "add-1", "read": "yes"}


async def test_a_lost_step_that_did_not_land_is_not_sent_again(store_factory: Factory) -> None:
    store = store_factory()
    request_id = _request(store)
    provider = Provider()
    provider.fail["add"] = ProviderTimeout("Fake", "no answer")  # and it never landed
    with pytest.raises(ProviderTimeout):
        await provider.run(Steps(store, request_id, _clock))
    with pytest.raises(Exception, match="did not take effect") as told:
        await provider.run(Steps.load(store, request_id, _clock))
    assert getattr(told.value, "fate", None) == "failed"
    assert provider.sent == ["create", "add"]  # "add" once, "submit" never


async def test_a_step_no_read_can_decide_is_uncertain(store_factory: Factory) -> None:
    store = store_factory()
    request_id = _request(store)
    steps = Steps(store, request_id, _clock)
    provider = Provider()

    async def lost() -> dict[str, str]:
        raise ProviderTimeout("Fake", "no answer")

    with pytest.raises(ProviderTimeout):
        await steps.write("only", lost, provider="Fake")
    with pytest.raises(StepUncertain) as told:
        await Steps.load(store, request_id, _clock).write(
            "only",
            provider.send("only"),  # type: ignore[arg-type]
            provider="Fake",
        )
    assert told.value.fate == "unknown" and told.value.step == "only"
    assert provider.sent == []


@pytest.mark.parametrize(
    "refusal",
    [ProviderAuthError("Fake", "key refused (HTTP 401)"), TimeoutError()],
    ids=["refused", "timeout"],
)
async def test_a_lost_step_whose_read_fails_is_uncertain_never_not_done(
    store_factory: Factory, refusal: Exception
) -> None:
    store = store_factory()
    request_id = _request(store)
    provider = Provider()
    provider.fail["add"] = ProviderTimeout("Fake", "no answer")  # sent, and it landed
    provider.landed.add("add")
    with pytest.raises(ProviderTimeout):
        await provider.run(Steps(store, request_id, _clock))

    async def refused() -> dict[str, str] | None:
        raise refusal

    journal = Steps.load(store, request_id, _clock)
    with pytest.raises(StepUncertain) as told:
        await journal.write("add", provider.send("add"), provider="Fake", find=refused)  # type: ignore[arg-type]
    assert told.value.fate == "unknown" and told.value.step == "add"
    assert "reading whether it took effect failed" in told.value.message
    assert provider.sent == ["create", "add"]  # never sent again
    assert [(r.name, r.done) for r in Steps.load(store, request_id, _clock)] == [
        ("create", True),
        ("add", False),  # still undecided: a later read may tell
    ]


async def test_a_refused_write_may_be_sent_again(store_factory: Factory) -> None:
    store = store_factory()
    request_id = _request(store)
    provider = Provider()
    provider.fail["create"] = ProviderRejected("Fake", "refused (HTTP 409)")
    with pytest.raises(ProviderRejected):
        await provider.run(Steps(store, request_id, _clock))
    assert list(Steps.load(store, request_id, _clock)) == []  # certainly not done: unmarked
    assert await provider.run(Steps.load(store, request_id, _clock)) == [
        "create-1",
        "add-1",
        "submit-1",
    ]


def test_two_processes_can_not_both_mark_a_step(store_factory: Factory) -> None:
    one, two = store_factory(), store_factory()
    request_id = _request(one)
    assert one.step_sent(request_id, "create", NOW)
    assert not two.step_sent(request_id, "create", NOW)
    one.step_done(request_id, "create", {"id": "x", "n": 3}, NOW)
    [record] = two.steps(request_id)
    assert record.done and record.result == {"id": "x", "n": 3}
    two.step_unsent(request_id, "create")  # a done step is never taken back
    assert len(one.steps(request_id)) == 1


def _claim(store: AnyStore, request_id: int, owner: str, until: datetime) -> None:
    moved = store.transition(
        request_id,
        sources(Event.CLAIM),
        destination(Event.CLAIM),
        at=NOW,
        lease=(owner, until),
    )
    assert moved


def test_a_step_is_marked_only_under_its_owners_lease(store_factory: Factory) -> None:
    store = store_factory()
    request_id = _request(store)
    assert not store.step_sent(request_id, "create", NOW, "A")  # not executing yet
    _claim(store, request_id, "A", NOW + timedelta(seconds=30))
    assert not store.step_sent(request_id, "create", NOW, "B")  # not B's lease
    assert not store.step_sent(request_id, "create", NOW + timedelta(seconds=30), "A")  # lapsed
    assert store.steps(request_id) == []
    assert store.step_sent(request_id, "create", NOW, "A")
    assert not store.step_sent(request_id, "create", NOW, "A")  # marked already
    later = NOW + timedelta(seconds=31)
    assert store.take_over(request_id, "B", later, later + timedelta(seconds=30), NOW)
    assert not store.step_sent(request_id, "add", later, "A")  # A stalled: fenced off
    assert store.step_sent(request_id, "add", later, "B")
    assert [r.name for r in store.steps(request_id)] == ["create", "add"]


async def test_a_process_whose_lease_was_taken_over_sends_nothing_more(
    store_factory: Factory,
) -> None:
    store = store_factory()
    request_id = _request(store)
    _claim(store, request_id, "A", NOW + timedelta(seconds=30))
    provider = Provider()
    provider.fail["add"] = ProviderTimeout("Fake", "no answer")
    stalled = Steps(store, request_id, _clock, owner="A")
    with pytest.raises(ProviderTimeout):
        await provider.run(stalled)
    later = NOW + timedelta(seconds=31)
    assert store.take_over(request_id, "B", later, later + timedelta(seconds=30), NOW)
    with pytest.raises(LeaseLost):
        await stalled.write("submit", provider.send("submit"), provider="Fake")  # type: ignore[arg-type]
    assert provider.sent == ["create", "add"]  # "submit" never went out
    assert [r.name for r in store.steps(request_id)] == ["create", "add"]


def test_sqlite_commits_the_journal_with_synchronous_full(tmp_path: Path) -> None:
    """A power loss must not lose a step's mark (its write goes out next) nor its answer: both
    commit with synchronous FULL, as the move to executing does, and the rest stays NORMAL."""
    store = open_any(str(tmp_path / "journal.db"))
    assert isinstance(store, SqliteStore)
    request_id = _request(store)
    said: list[str] = []
    store.db.conn.set_trace_callback(said.append)
    store.step_sent(request_id, "create", NOW)
    store.step_done(request_id, "create", {"id": "x"}, NOW)
    store.db.conn.set_trace_callback(None)
    commits = [n for n, statement in enumerate(said) if statement == "COMMIT"]
    assert len(commits) == 2
    for commit in commits:
        pragmas = [s for s in said[:commit] if s.startswith("PRAGMA synchronous")]
        assert pragmas[-1] == "PRAGMA synchronous = FULL"
    assert said[-1] == "PRAGMA synchronous = NORMAL"
    store.close()
