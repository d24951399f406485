"""One provider's calls, as the core needs them. Errors are `ProviderError`s."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

from bot.core.model import Action, Drift, Listing, Outcome, Preview, Query
from bot.core.timing import Live

if TYPE_CHECKING:
    from bot.core.steps import Steps


class Provider(Protocol):
    """Preview, do once, read back after a crash.

    A write goes through `steps` (the request's journal, `bot/core/steps.py`): each write is
    one recorded step, marked before it is sent and answered after, so an action of several
    writes (an App Store review submission is three) is taken up after a crash from the last
    recorded step, and never sends a step twice. Today's single-write actions are one step."""

    name: str

    async def preview(self, action: Action) -> Preview:
        """Read what the action would change; set `refusal` if it must not be offered."""
        ...

    async def execute(
        self, action: Action, *, promoted_by: str, expect: Mapping[str, str], steps: Steps
    ) -> Outcome:
        """Do the action, once, if the provider still shows what `expect` (the preview's
        "now") says; otherwise send nothing and answer `failed`, saying what changed. Never
        retried by the caller when the fate is unknown."""
        ...

    async def observe(
        self, action: Action, *, promoted_by: str, expect: Mapping[str, str], steps: Steps
    ) -> Outcome | None:
        """After a crash: decide by reading, comparing with `expect` (what the provider showed
        before the write): `succeeded` if it shows the change, `failed` only if it shows
        exactly the state from before, `unknown` otherwise; None when it can't tell.

        An action of several steps carries on from its journal: a step it shows done is
        never sent again, a step marked sent is decided by reading it, and only steps the
        journal shows were never sent may be sent now."""
        ...

    async def drift(self, action: Action, expect: Mapping[str, str]) -> Drift | None:
        """Read again what the preview read, and compare with `expect` (what it showed as
        "now"): what moved since, or None while the preview still holds. A read only, with
        the same comparison the write makes before it is sent."""
        ...

    async def show(self, query: Query) -> Listing:
        """Read what a `Query` asks about (builds, bundles), changing nothing."""
        ...

    async def stage_live(self, action: Action) -> Live | None:
        """What `action` promotes, as live in its source stage now, with the provider's own
        timestamp of when it went live there; None for an action from no stage."""
        ...

    async def aclose(self) -> None:
        """Close the provider's HTTP client."""
        ...
