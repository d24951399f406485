"""A known history of requests, seeded through the store's own methods at known times, for the
tests of what the releases add up to (`stats`, the metrics, the App Home)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from bot.core.model import Action, AuditEntry, NewRequest, Outcome, State
from bot.core.ports import Store
from bot.providers.whop import WhopPromote
from bot.providers.znyx import ZnyxActivate, ZnyxPromote

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
DAY, HOUR, MINUTE = timedelta(days=1), timedelta(hours=1), timedelta(minutes=1)
ZNYX = "znyx:guardrails:prod"
WHOP = "whop:storefront"
PROMOTE = ZnyxPromote(org_id="org-test", project="guardrails", project_id="proj-guardrails",
                      source_env="staging")  # fmt: skip
WHOP_PROMOTE = WhopPromote(
    app="storefront", app_id="app_storefront01", build_id="apbu_1", platform="ios"
)
OPEN = (State.PENDING, State.APPROVED)
ASKER, APPROVER = "U0ALICE", "U0DAVE"


def undo(version: int, undoing: str) -> ZnyxActivate:
    return ZnyxActivate(
        org_id="org-test",
        project="guardrails",
        project_id="proj-guardrails",
        env="prod",
        version=version,
        undoing=undoing,
    )


def run(
    store: Store,
    action: Action,
    asked: datetime,
    *,
    approvals: Sequence[datetime] = (),
    ended: datetime | None = None,
    state: State = State.SUCCEEDED,
    rolls_back: int | None = None,
    emergency: str | None = None,
) -> int:
    """One request: asked at `asked`, approved at each of `approvals` (by distinct people),
    and, when `ended` is given, ended then in `state` (a promotion runs first)."""
    new = NewRequest(
        action,
        requester=ASKER,
        channel="C0RELEASES",
        preview=None,
        created_at=asked,
        expires_at=asked + 3 * DAY,
        rolls_back=rolls_back,
        emergency=emergency,
    )
    request_id = store.create_request(new).id
    for i, at in enumerate(approvals):
        assert store.add_approval(request_id, f"{APPROVER}{i}", at)
    if ended is None:
        return request_id
    if state in (State.REJECTED, State.CANCELLED, State.EXPIRED):
        assert store.transition(request_id, OPEN, state, at=ended, by=APPROVER, reason="not now")
        return request_id
    started = ended - MINUTE
    assert store.transition(
        request_id, OPEN, State.EXECUTING, at=started, lease=("seed", started + HOUR)
    )
    if state is not State.EXECUTING:
        outcome = Outcome(
            state=state.value,  # type: ignore[arg-type]
            headline=f"{state.value} as seeded",
            installed={"version": str(request_id), "policy_hash": "sha256:" + "a" * 64},
        )
        assert store.transition(request_id, [State.EXECUTING], state, at=ended, outcome=outcome)
    return request_id


def seed(store: Store) -> dict[str, int]:
    """The history; request numbers by name. In the 30 days up to NOW, for `znyx:guardrails:
    prod`: promotions P1, P2 (rolled back by R1), P6 (an emergency) and P7 (asked before the
    window) succeed, P3 fails, P4 is unknown, P5 is rejected; R2, a rollback of P6, fails.
    For `whop:storefront`: Q1 succeeds, Q2 is cancelled, Q3 is still executing. P0 succeeded
    before the window."""
    t = NOW
    ids = {}
    ids["P0"] = run(store, PROMOTE, t - 40 * DAY, ended=t - 40 * DAY + HOUR)
    ids["P7"] = run(
        store, PROMOTE, t - 31 * DAY, approvals=[t - 30 * DAY], ended=t - 29 * DAY
    )  # asked outside the window, ended inside: lead 2 days, approval wait 1 day
    p1 = t - 10 * DAY
    ids["P1"] = run(store, PROMOTE, p1, approvals=[p1 + 20 * MINUTE], ended=p1 + HOUR)
    p2 = t - 9 * DAY
    ids["P2"] = run(
        store, PROMOTE, p2, approvals=[p2 + 10 * MINUTE, p2 + 15 * MINUTE], ended=p2 + 2 * HOUR
    )
    ids["R1"] = run(
        store,
        undo(1, "v2"),
        p2 + 2 * HOUR + 5 * MINUTE,
        ended=p2 + 2 * HOUR + 30 * MINUTE,  # restored 30 minutes after P2 succeeded
        rolls_back=ids["P2"],
    )
    p3 = t - 8 * DAY
    ids["P3"] = run(
        store, PROMOTE, p3, approvals=[p3 + 30 * MINUTE], ended=p3 + 45 * MINUTE, state=State.FAILED
    )
    p4 = t - 7 * DAY
    ids["P4"] = run(
        store, PROMOTE, p4, approvals=[p4 + 5 * MINUTE], ended=p4 + HOUR, state=State.UNKNOWN
    )
    p5 = t - 6 * DAY
    ids["P5"] = run(store, PROMOTE, p5, ended=p5 + 15 * MINUTE, state=State.REJECTED)
    p6 = t - 5 * DAY
    ids["P6"] = run(
        store,
        PROMOTE,
        p6,
        approvals=[p6 + 2 * MINUTE],
        ended=p6 + 10 * MINUTE,
        emergency="incident 4521",
    )
    ids["R2"] = run(
        store,
        undo(5, "v6"),
        t - 4 * DAY,
        ended=t - 4 * DAY + 10 * MINUTE,
        state=State.FAILED,
        rolls_back=ids["P6"],
    )
    q1 = t - 3 * DAY
    ids["Q1"] = run(store, WHOP_PROMOTE, q1, approvals=[q1 + HOUR], ended=q1 + 90 * MINUTE)
    q2 = t - 2 * DAY
    ids["Q2"] = run(store, WHOP_PROMOTE, q2, ended=q2 + 5 * MINUTE, state=State.CANCELLED)
    q3 = t - 1 * DAY
    ids["Q3"] = run(
        store, WHOP_PROMOTE, q3, approvals=[q3 + 30 * MINUTE], ended=q3 + HOUR,
        state=State.EXECUTING,
    )  # fmt: skip
    return ids


STAGING = "znyx:guardrails:staging"


def seed_beside(store: Store, ids: dict[str, int]) -> None:
    """What the audit log alone records (issue 26), over `seed`'s history: changes outside the
    bot at `znyx:guardrails:prod` 40, 20 and 3 days ago and at its staging 2 days ago (only
    that there); P5's preview moved twice and Q1's once (a preview that holds again is not
    counted)."""
    from bot.core.drift import MOVED
    from bot.core.truth import OUTSIDE

    def entry(at: datetime, event: str, target: str, request_id: int | None = None) -> None:
        actor = "Znyx: ui:carol" if request_id is None else "promote-bot"
        store.audit(AuditEntry(at=at, request_id=request_id, actor=actor, event=event,
                               target=target, detail="v1 → v2"))  # fmt: skip

    for days in (40, 20, 3):
        entry(NOW - days * DAY, OUTSIDE, ZNYX)
    entry(NOW - 2 * DAY, OUTSIDE, STAGING)
    p5 = NOW - 6 * DAY
    entry(p5 + 5 * MINUTE, MOVED, ZNYX, ids["P5"])
    entry(p5 + 6 * MINUTE, "preview holds again", ZNYX, ids["P5"])
    entry(p5 + 10 * MINUTE, MOVED, ZNYX, ids["P5"])
    entry(NOW - 3 * DAY + 10 * MINUTE, MOVED, WHOP, ids["Q1"])
