"""An execution's writes as a journal of recorded steps (Kargo's step checkpoint).

A provider action may be several writes (an App Store review submission is three: create the
submission, add the version, submit). Each goes through `Steps.write`: the step is marked sent
in the store before its write goes out, and its answer is recorded before the next step is
sent. A process may die between any two; whoever takes the request up afterwards (a recovery)
runs the same sequence with the same journal:

- a step recorded done is never sent again: its recorded answer stands in for it;
- a step marked sent but never answered may or may not have landed: it is decided by reading
  (`find`), never by sending it again, and it is `StepUncertain` when the read can't tell;
- a step never marked was certainly never sent: it may be sent now.

Marking is a compare-and-set, so two processes (a stalled one and its recovery) can't both send
a step. Today's single-write actions are the one-step case.

The core may give the journal a `guard`, run right before the first step is marked and sent
(in a recovery, before every step never sent): what it says stops the execution there, with
nothing more sent (a lock set while the provider was being read before the write, or while the
bot was down).

A journal kept for a lease `owner` is fenced: a step is marked only while that owner holds the
lease on the request and it is still executing (checked in the store, with the mark). A process
whose lease was taken over (it stalled past it) gets `LeaseLost` and sends nothing more.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from bot.core.errors import ProviderError, ProviderUncertain
from bot.core.model import StepRecord
from bot.core.ports.store import StepStore

Result = Mapping[str, Any]  # what a step's write answered, as JSON the journal keeps
Guard = Callable[[], str | None]  # why nothing may be sent now, or None


class Held(ProviderError):
    """The guard stopped the first write: nothing was sent (the outcome is `failed`)."""


class LeaseLost(Exception):
    """The request's lease is no longer this process's (taken over after a stall), or the
    request is no longer executing: nothing more is sent, and the outcome is the new owner's to
    record."""

    def __init__(self, request_id: int, step: str) -> None:
        super().__init__(f"request #{request_id}: lease lost before the step '{step}'")
        self.request_id = request_id
        self.step = step


class StepUncertain(ProviderUncertain):
    """A step may have reached the provider and a read can't tell whether it did."""

    def __init__(self, provider: str, step: str, message: str) -> None:
        super().__init__(provider, message)
        self.step = step


class StepNotDone(ProviderError):
    """A step marked sent whose answer was lost, and a read shows it did not take effect."""

    def __init__(self, provider: str, step: str, message: str) -> None:
        super().__init__(provider, message)
        self.step = step


class Steps:
    """The journal of one request's execution, kept in the store."""

    def __init__(
        self,
        store: StepStore,
        request_id: int,
        clock: Callable[[], datetime],
        records: list[StepRecord] | None = None,
        *,
        guard: Guard | None = None,
        owner: str | None = None,
    ) -> None:
        self.store = store
        self.request_id = request_id
        self.clock = clock
        self.guard = guard
        self.owner = owner  # the lease holder the journal is fenced for (None: not fenced)
        # A recovery carries on past a crash: `guard` is asked before every step never sent.
        self.guard_each = False
        self._records = {r.name: r for r in (records or [])}
        # Reading only (an `unknown` request looked at again): a step never sent stays unsent.
        self.reading_only = False

    @classmethod
    def in_memory(cls, clock: Callable[[], datetime] | None = None) -> Steps:
        """A journal kept in this process only: for calling a provider outside a request
        (its client's tests, a one-off), where no recovery will ever read it."""
        return cls(_MemoryJournal(), 0, clock or (lambda: datetime.now(UTC)))

    @classmethod
    def load(
        cls,
        store: StepStore,
        request_id: int,
        clock: Callable[[], datetime],
        *,
        guard: Guard | None = None,
        owner: str | None = None,
    ) -> Steps:
        """The journal as the store has it (after a crash: what was sent and answered), for
        carrying on: `guard` is asked before every step never sent."""
        steps = cls(store, request_id, clock, store.steps(request_id), guard=guard, owner=owner)
        steps.guard_each = True
        return steps

    def __iter__(self) -> Iterator[StepRecord]:
        return iter(sorted(self._records.values(), key=lambda r: r.sent_at))

    @property
    def started(self) -> bool:
        """Whether any write was marked sent: False means nothing reached the provider."""
        return bool(self._records)

    def result(self, name: str) -> Result | None:
        """What step `name` answered, if it is recorded done."""
        record = self._records.get(name)
        return record.result if record is not None and record.done else None

    def marked(self, name: str) -> bool:
        """Whether step `name` was marked sent (done or not)."""
        return name in self._records

    async def write(
        self,
        name: str,
        send: Callable[[], Awaitable[Result]],
        *,
        provider: str,
        find: Callable[[], Awaitable[Result | None]] | None = None,
    ) -> Result:
        """Step `name`: its recorded answer if done; else decided by `find` if it was marked
        sent; else marked, sent once (`send`) and its answer recorded. Before the journal's first
        write, `guard` may stop it (`Held`: nothing was sent).

        `find` reads whether the step's write took effect: its result if it did, None if it
        certainly did not. A step that certainly did not take effect is not sent again here
        either: that is a `ProviderError` saying so (the caller asks again, as a person)."""
        record = self._records.get(name)
        if record is not None and record.done:
            return record.result
        if record is not None:
            return await self._decide(name, provider, find)
        if self.reading_only:
            raise ProviderError(provider, f"not sent: the step '{name}' was never sent")
        if self.guard is not None and (self.guard_each or not self._records):
            why = self.guard()  # right before the first write (a recovery: before each)
            if why:
                raise Held(provider, f"not sent: {why}")
        now = self.clock()
        if not self.store.step_sent(self.request_id, name, now, self.owner):
            self._records = {r.name: r for r in self.store.steps(self.request_id)}
            if name not in self._records:  # not marked by another: the fence held it back
                raise LeaseLost(self.request_id, name)
            return await self._decide(name, provider, find)  # another process has it
        self._records[name] = StepRecord(name=name, sent_at=now)
        try:
            result = dict(await send())
        except ProviderError as exc:
            if exc.fate == "failed":  # refused, or never delivered: it did not happen
                self.store.step_unsent(self.request_id, name)
                del self._records[name]
            raise
        self._done(name, result)
        return result

    async def _decide(
        self, name: str, provider: str, find: Callable[[], Awaitable[Result | None]] | None
    ) -> Result:
        """A step marked sent whose answer was never recorded: read whether it landed."""
        record = self._records.get(name)
        if record is not None and record.done:
            return record.result
        try:
            found = await find() if find is not None else None
        except (StepUncertain, StepNotDone):
            raise  # the read could tell, and says so
        except (ProviderError, TimeoutError) as exc:
            # A step marked sent may have landed: a read that fails tells nothing, so it is
            # never taken for "not done" (nor its error's fate for the step's).
            why = exc.message if isinstance(exc, ProviderError) else "it took too long"
            raise StepUncertain(
                provider,
                name,
                f"the step '{name}' was sent to {provider} and its answer was lost, and "
                f"reading whether it took effect failed ({why})",
            ) from exc
        if found is None and find is None:
            raise StepUncertain(
                provider,
                name,
                f"the step '{name}' was sent to {provider} and its answer was lost, and "
                f"{provider} can't be asked whether it took effect",
            )
        if found is None:
            raise StepNotDone(
                provider,
                name,
                f"not done: the step '{name}' was sent to {provider} and did not take effect "
                "(nothing was sent again)",
            )
        result = dict(found)
        self._done(name, result)
        return result

    def _done(self, name: str, result: dict[str, Any]) -> None:
        now = self.clock()
        self.store.step_done(self.request_id, name, result, now)
        record = self._records.get(name) or StepRecord(name=name, sent_at=now)
        self._records[name] = record.model_copy(update={"done_at": now, "result": result})


class _MemoryJournal:
    """`StepStore` in a dict, for `Steps.in_memory`."""

    def __init__(self) -> None:
        self.records: dict[str, StepRecord] = {}

    def step_sent(self, request_id: int, name: str, at: datetime, owner: str | None = None) -> bool:
        if name in self.records:
            return False
        self.records[name] = StepRecord(name=name, sent_at=at)
        return True

    def step_done(self, request_id: int, name: str, result: Result, at: datetime) -> None:
        self.records[name] = self.records[name].model_copy(
            update={"done_at": at, "result": dict(result)}
        )

    def step_unsent(self, request_id: int, name: str) -> None:
        self.records.pop(name, None)

    def steps(self, request_id: int) -> list[StepRecord]:
        return list(self.records.values())
