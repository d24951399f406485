"""Releasing a version Apple approved, and its phased release: pause, resume, complete.

A release (`POST /v1/appStoreVersionReleaseRequests`) can't be undone; nor can completing a
phased release. A pause is undone by resuming, and a resume by pausing. Apple allows a phased
release 30 days of pauses in all, and rolls it out over 7 days (1, 2, 5, 10, 20, 50, 100% of
users with automatic updates).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from bot.core.errors import ProviderError
from bot.core.model import Fact, Outcome, Preview, changed, not_sent
from bot.core.steps import Steps
from bot.providers.appstore_api import Reads, Resource, version_state
from bot.providers.appstore_train import (
    PAUSE_DAYS,
    ROLLOUT,
    AppStorePhased,
    AppStoreRelease,
    stopped,
    unconfirmed,
    unsent,
)
from bot.providers.appstore_train_client import Phased, TrainClient

WAITING = "PENDING_DEVELOPER_RELEASE"
RELEASED = ("PROCESSING_FOR_DISTRIBUTION", "READY_FOR_DISTRIBUTION")
_FROM = {"pause": ("ACTIVE",), "resume": ("PAUSED",), "complete": ("ACTIVE", "PAUSED")}


def _day(phased: Phased) -> str:
    if phased.day < 1:
        return "not started"
    return f"{phased.day} of 7 ({ROLLOUT.get(phased.day, 100)}% of users with automatic updates)"


def _at(phased: Phased) -> str:
    """ "day 3 of 7, 5% of users" """
    return f"day {phased.day} of 7, {ROLLOUT.get(phased.day, 100)}% of users"


def _paused(phased: Phased) -> str:
    return f"{phased.paused_days} of {PAUSE_DAYS} days"


def _phased_facts(phased: Phased) -> list[Fact]:
    return [
        Fact(label="Phased release", value=phased.state),
        Fact(label="Day", value=_day(phased)),
        Fact(label="Paused so far", value=_paused(phased)),
    ]


class Release:
    """Preview, run and recover `release` and `phased` requests."""

    actions = (AppStoreRelease, AppStorePhased)

    def __init__(self, reads: Reads, client: TrainClient) -> None:
        self.reads, self.client = reads, client

    # --- preview -------------------------------------------------------------------------

    async def preview(self, action: AppStoreRelease | AppStorePhased) -> Preview:
        version = await self.reads.version(action)
        if isinstance(version, str):
            return Preview(refusal=version)
        state, shown = version_state(version), f"{action.app} {action.version}"
        attached, phased = await asyncio.gather(
            self.reads.attached(version.id), self.client.phased(version.id)
        )
        facts = [
            Fact(label="Version", value=f"{action.version} ({state})"),
            Fact(label="Build", value=attached.describe() if attached else "no build"),
        ]
        resolved: dict[str, Any] = {"version_id": version.id}
        if isinstance(action, AppStoreRelease):
            if state in RELEASED:
                return Preview(refusal=f"{shown} is released already ({state}).")
            if state != WAITING:
                return Preview(
                    refusal=f"{shown} is {state}: only a version Apple approved and waiting for "
                    f"its release ({WAITING}) can be released."
                )
            rollout = (
                "over 7 days, from day 1 (1% of users with automatic updates)"
                if phased is not None and phased.state == "INACTIVE"
                else "to every user at once (no phased release)"
            )
            facts.append(Fact(label="Releases", value=f"{action.version} {rollout}"))
            warnings = [
                f"Releasing can't be undone: once released, {shown} is on the App Store and "
                "can't be taken back."
            ]
            expect = {
                "version_state": state,
                "attached": attached.id if attached else "",
                "phased": phased.state if phased else "",
            }
            return Preview(
                facts=facts,
                warnings=warnings,
                expect=expect,
                action=action.model_copy(update=resolved),
            )
        if phased is None:
            return Preview(refusal=f"{shown} has no phased release: it goes to every user at once.")
        refusal = _unfit(action, phased)
        if refusal:
            return Preview(refusal=refusal)
        facts += _phased_facts(phased)
        facts.append(Fact(label="Change", value=f"{phased.state} → {action.wanted}"))
        left = PAUSE_DAYS - phased.paused_days
        warnings = {
            "pause": [
                f"While paused, no more users get {action.version} automatically (anyone may "
                f"still update by hand). Apple allows {PAUSE_DAYS} days of pauses in all: "
                f"{left} are left, then it resumes by itself."
            ],
            "resume": [f"The rollout carries on from day {phased.day} of 7."],
            "complete": [
                f"Completing releases {action.version} to every user with automatic updates at "
                "once; it can't be undone."
            ],
        }[action.change]
        resolved["phased_id"] = phased.id
        expect = {"phased_state": phased.state, "day": str(phased.day)}
        expect["paused_days"] = str(phased.paused_days)
        return Preview(
            facts=facts, warnings=warnings, expect=expect, action=action.model_copy(update=resolved)
        )

    # --- execution and recovery ----------------------------------------------------------

    async def check(
        self, action: AppStoreRelease | AppStorePhased, expect: Mapping[str, str]
    ) -> Outcome | None:
        """The reads before the first write, compared with the preview: None to go ahead,
        else why nothing would be sent (a `ProviderError` when they fail)."""
        assert action.version_id
        shown = f"{action.app} {action.version}"
        if isinstance(action, AppStorePhased):
            phased = await self.client.phased(action.version_id)
            if phased is None:
                return not_sent(f"{shown} has no phased release any more")
            if phased.state != expect.get("phased_state"):
                then = expect.get("phased_state", "?")
                return changed(f"the phased release of {shown}", then, phased.state)
            return None
        version, attached = await asyncio.gather(
            self.reads.version(action), self.reads.attached(action.version_id)
        )
        if isinstance(version, str):
            return not_sent(version)
        state = version_state(version)
        if state != expect.get("version_state"):
            return changed(f"{shown}'s state", expect.get("version_state", "?"), state)
        now = attached.id if attached else ""
        if now != expect.get("attached", now):
            then = expect.get("attached") or "no build"
            shows = attached.describe() if attached else "no build"
            return changed(f"the build attached to {shown}", then, shows)
        return None

    async def execute(
        self, action: AppStoreRelease | AppStorePhased, expect: Mapping[str, str], steps: Steps
    ) -> Outcome:
        try:
            stop = await self.check(action, expect)
        except ProviderError as exc:
            shown = f"{action.app} {action.version}"
            return not_sent(f"couldn't read {shown} before the change ({exc.message})")
        return stop or await self._run(action, expect, steps)

    async def observe(
        self, action: AppStoreRelease | AppStorePhased, expect: Mapping[str, str], steps: Steps
    ) -> Outcome | None:
        """Carry on from the journal; with nothing sent, decide by reading only."""
        assert action.version_id
        if steps.started:
            return await self._run(action, expect, steps)
        shown = f"{action.app} {action.version}"
        if isinstance(action, AppStorePhased):
            phased = await self.client.phased(action.version_id)
            now = phased.state if phased else "no phased release"
            return unsent(
                f"{shown}'s phased release {now}", now == expect.get("phased_state"), _check(action)
            )
        version = await self.reads.version(action)
        state = version_state(version)
        return unsent(f"{shown} {state}", state == expect.get("version_state"), _check(action))

    async def _run(
        self, action: AppStoreRelease | AppStorePhased, expect: Mapping[str, str], steps: Steps
    ) -> Outcome:
        assert action.version_id
        version_id, request_id = action.version_id, None
        try:
            if isinstance(action, AppStorePhased):
                assert action.phased_id
                await self.client.set_phased(steps, version_id, action.phased_id, action.wanted)
            else:

                async def released() -> dict[str, Any] | None:
                    version = await self.reads.version(action)
                    if isinstance(version, Resource) and version_state(version) in RELEASED:
                        return version.document()
                    return None

                request_id = await self.client.release(steps, version_id, released)
        except ProviderError as exc:
            return stopped(exc, [], _check(action))
        return await self._read_back(action, expect, request_id)

    async def _read_back(
        self,
        action: AppStoreRelease | AppStorePhased,
        expect: Mapping[str, str],
        request_id: str | None = None,
    ) -> Outcome:
        assert action.version_id
        shown = f"{action.app} {action.version}"
        try:
            version, phased = await asyncio.gather(
                self.reads.version(action), self.client.phased(action.version_id)
            )
        except ProviderError as exc:
            return unconfirmed(f"reading it back failed ({exc.message})", _check(action))
        state = version_state(version)
        facts = [Fact(label="Version", value=f"{action.version} ({state})")]
        facts += _phased_facts(phased) if phased else []
        if request_id:
            facts.append(Fact(label="Release request", value=request_id))
        if isinstance(action, AppStoreRelease):
            if state not in RELEASED:
                return unconfirmed(f"{shown} reads {state}", _check(action), facts)
            rollout = ""
            if phased is not None and phased.state == "ACTIVE":
                rollout = f"; its phased release is ACTIVE, at {_at(phased)}"
            return Outcome(
                state="succeeded",
                headline=f"{shown} is released to the App Store ({state}){rollout}",
                facts=facts,
                before={"version_state": expect.get("version_state", "")},
                installed={"version_state": state},
            )
        if phased is None or phased.state != action.wanted:
            now = phased.state if phased else "no phased release"
            return unconfirmed(f"its phased release reads {now}", _check(action), facts)
        return Outcome(
            state="succeeded",
            headline=f"the phased release of {shown} is {phased.state}, at {_at(phased)}, "
            f"paused {_paused(phased)} so far",
            facts=facts,
            before={"phased_state": expect.get("phased_state", "")},
            installed={"phased_state": phased.state},
        )


def _unfit(action: AppStorePhased, phased: Phased) -> str | None:
    """Why the phased release can't make this change now, or None."""
    shown = f"The phased release of {action.app} {action.version}"
    if action.undoing is not None and phased.state != action.undoing:
        return (
            f"Something else changed since: {shown.lower()} is {phased.state} now, not "
            f"{action.undoing}, so there is nothing to roll back. Nothing was posted."
        )
    if phased.state == action.wanted:
        return f"{shown} is {phased.state} already, at {_at(phased)}."
    if phased.state == "INACTIVE":
        return f"{shown} hasn't started: it starts when {action.version} is released."
    if phased.state == "COMPLETE":
        return f"{shown} is complete: every user with automatic updates has {action.version}."
    if phased.state not in _FROM[action.change]:
        return f"{shown} is {phased.state}: it can't {action.change} from there."
    if action.change == "pause" and phased.paused_days >= PAUSE_DAYS:
        return (
            f"{shown} was paused for {phased.paused_days} days already: Apple allows "
            f"{PAUSE_DAYS} in all."
        )
    return None


def _check(action: AppStoreRelease | AppStorePhased) -> str:
    return f"Check {action.app} {action.version}'s release in App Store Connect."
