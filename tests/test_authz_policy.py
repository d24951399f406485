"""The role map, the approval decisions, and policy matching: pure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.core.authz import RoleMap, can_approve, can_decide, can_request, who_can_approve
from bot.core.model import Approval, Request, State
from bot.core.policy import Policy, describe, parse_duration, policy_for
from bot.providers.znyx import ZnyxPromote

PUBLISH, BUILDS = "bundle:publish", "developer:manage_builds"

ROLES = RoleMap(
    roles={
        "rm": frozenset({PUBLISH, BUILDS}),
        "policy": frozenset({PUBLISH}),
        "mobile": frozenset({BUILDS}),
    },
    members={
        "UALICE": ("rm",),
        "UBOB": ("policy",),
        "UCAROL": ("mobile",),
        "UDAVE": ("rm", "mobile"),
    },
)
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def _request(requester: str = "UALICE") -> Request:
    action = ZnyxPromote(org_id="o", project="guardrails", project_id="p", source_env="staging")
    return Request(
        id=1,
        action=action,
        requester=requester,
        channel="C",
        state=State.PENDING,
        created_at=NOW,
        updated_at=NOW,
        expires_at=NOW + timedelta(hours=24),
    )


def test_scopes_are_the_union_of_roles() -> None:
    assert ROLES.scopes_of("UDAVE") == {PUBLISH, BUILDS}
    assert ROLES.scopes_of("UNOBODY") == frozenset()


@pytest.mark.parametrize(
    ("user", "allowed"), [("UALICE", True), ("UBOB", True), ("UCAROL", False), ("UNOBODY", False)]
)
def test_can_request(user: str, allowed: bool) -> None:
    decision = can_request(ROLES, user, PUBLISH)
    assert bool(decision) is allowed
    if not allowed:
        assert "`bundle:publish`" in decision.reason


def test_self_approval_is_refused_by_default_and_allowed_when_configured() -> None:
    request = _request("UALICE")
    assert not can_approve(ROLES, Policy(), request, "UALICE")
    assert can_approve(ROLES, Policy(allow_self_approval=True), request, "UALICE")
    assert can_approve(ROLES, Policy(), request, "UBOB")
    assert can_decide(ROLES, Policy(), request, "UALICE")  # the requester may still reject


def test_approver_roles_narrow_who_may_approve() -> None:
    policy = Policy(approver_roles=("rm",))
    request = _request("UBOB")
    assert can_approve(ROLES, policy, request, "UDAVE")
    refused = can_approve(ROLES, policy, request, "UBOB")
    assert not refused and "only rm may" in refused.reason
    assert not can_approve(ROLES, Policy(approver_roles=("mobile",)), request, "UCAROL")


@pytest.mark.parametrize(
    ("target", "approvals"),
    [
        ("znyx:guardrails:prod", 3),
        ("znyx:edge:prod", 2),
        ("znyx:edge:staging", 1),
        ("whop:storefront", 0),
        ("appstore:ios", 1),  # no pattern matches: the default policy
    ],
)
def test_most_specific_pattern_wins(target: str, approvals: int) -> None:
    policies = {
        "znyx:*": Policy(approvals=1),
        "znyx:*:prod": Policy(approvals=2),
        "znyx:guardrails:prod": Policy(approvals=3),
        "whop:*": Policy(approvals=0),
    }
    assert policy_for(target, policies).approvals == approvals


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("90m", timedelta(minutes=90)),
        ("24h", timedelta(days=1)),
        ("2d", timedelta(days=2)),
        (3600, timedelta(hours=1)),
    ],
)
def test_durations(value: str | int, expected: timedelta) -> None:
    assert parse_duration(value) == expected


@pytest.mark.parametrize("value", ["soon", "0h", "-5m", "1w", 0, "", "h"])
def test_bad_durations(value: str | int) -> None:
    with pytest.raises(ValueError):
        parse_duration(value)


def test_policy_is_described_for_people() -> None:
    expires = datetime(2026, 11, 23, 14, 5, tzinfo=UTC)
    assert describe(Policy(approvals=2), expires) == (
        "needs 2 approvals, not by the requester, expires 2026-11-23 14:05 UTC"
    )
    assert describe(Policy(approvals=1, allow_self_approval=True)) == "needs 1 approval"
    assert describe(Policy(approvals=0), expires) == "runs without approval"


def test_a_group_gives_its_roles_only_once_its_members_are_known() -> None:
    grouped = RoleMap(roles=ROLES.roles, members=ROLES.members, groups={"SRM": ("rm",)})
    assert grouped.roles_of("UERIN") == ()  # unresolved (the shell, or Slack never answered)
    resolved = grouped.with_group_members({"SRM": frozenset({"UERIN", "UBOB"})})
    assert resolved.roles_of("UERIN") == ("rm",)
    assert resolved.roles_of("UBOB") == ("policy", "rm")
    assert can_approve(resolved, Policy(), _request(), "UERIN")
    assert grouped.with_group_members({"SOTHER": frozenset({"UERIN"})}).roles_of("UERIN") == ()


def test_who_can_approve_names_the_groups_or_else_up_to_five_people() -> None:
    grouped = RoleMap(roles=ROLES.roles, members=ROLES.members, groups={"SRM": ("rm",)})
    assert who_can_approve(grouped, Policy(), _request()).groups == ("SRM",)
    mobile_only = Policy(approver_roles=("mobile",))
    assert who_can_approve(grouped, mobile_only, _request()).groups == ()
    many = RoleMap(
        roles=ROLES.roles, members={f"U{i}": ("policy",) for i in range(8)} | ROLES.members
    )
    who = who_can_approve(many, Policy(), _request("U0"))  # not the requester
    assert who.people == ("U1", "U2", "U3", "U4", "U5") and who.more == 5  # U6, U7, BOB, …
    approved = _request("U0").model_copy(update={"approvals": [Approval(user="U1", at=NOW)]})
    assert "U1" not in who_can_approve(many, Policy(), approved).people
