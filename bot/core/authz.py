"""The role map and the decisions made with it. Pure functions, no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from bot.core.model import Request, Scope
from bot.core.policy import Policy


@dataclass(frozen=True)
class RoleMap:
    """Roles are sets of scopes; Slack users, and Slack user groups, are given roles.

    A group's roles reach its members only once its members are known: `group_members` holds
    them as plain data (group id → user ids), looked up outside the core. A group with no entry
    there is unresolved, and gives nobody anything."""

    roles: dict[str, frozenset[Scope]] = field(default_factory=dict)
    members: dict[str, tuple[str, ...]] = field(default_factory=dict)
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)
    group_members: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def with_group_members(self, resolved: Mapping[str, frozenset[str]]) -> RoleMap:
        """The same map with the members of its groups as `resolved` says (others unresolved)."""
        known = {g: frozenset(resolved[g]) for g in self.groups if g in resolved}
        return replace(self, group_members=known)

    def roles_of(self, user: str) -> tuple[str, ...]:
        roles = list(self.members.get(user, ()))
        for group, granted in self.groups.items():
            if user in self.group_members.get(group, ()):
                roles += [r for r in granted if r not in roles]
        return tuple(roles)

    def scopes_of(self, user: str) -> frozenset[Scope]:
        scopes: set[Scope] = set()
        for role in self.roles_of(user):
            scopes |= self.roles.get(role, frozenset())
        return frozenset(scopes)

    def has_scope(self, user: str, scope: Scope) -> bool:
        return scope in self.scopes_of(user)

    def grants(self, roles: tuple[str, ...], scope: Scope, policy: Policy) -> bool:
        """Do `roles` let their holder approve an action needing `scope` under `policy`?"""
        if not any(scope in self.roles.get(r, frozenset()) for r in roles):
            return False
        return not policy.approver_roles or bool(set(policy.approver_roles) & set(roles))


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.allowed


ALLOW = Decision(True)


def _lacks_scope(role_map: RoleMap, user: str, scope: Scope, doing: str) -> Decision:
    roles = role_map.roles_of(user)
    held = ", ".join(roles) if roles else "none"
    return Decision(False, f"You can't {doing}: it needs the `{scope}` scope (your roles: {held}).")


def can_request(role_map: RoleMap, user: str, scope: Scope) -> Decision:
    """May `user` ask for an action that needs `scope`?"""
    if role_map.has_scope(user, scope):
        return ALLOW
    return _lacks_scope(role_map, user, scope, "request this")


def can_see(role_map: RoleMap, user: str, scope: Scope) -> Decision:
    """May `user` look at what a provider has (its builds, its bundles)? Who may ask for
    its actions may."""
    if role_map.has_scope(user, scope):
        return ALLOW
    return _lacks_scope(role_map, user, scope, "see this")


def can_decide(role_map: RoleMap, policy: Policy, request: Request, user: str) -> Decision:
    """May `user` approve or reject `request` under `policy`, as the config stands now?"""
    scope = request.action.scope
    if not role_map.has_scope(user, scope):
        return _lacks_scope(role_map, user, scope, "approve or reject this")
    if policy.approver_roles and not set(policy.approver_roles) & set(role_map.roles_of(user)):
        return Decision(
            False,
            "You can't approve or reject this: only "
            + ", ".join(policy.approver_roles)
            + " may, under this target's policy.",
        )
    return ALLOW


def can_approve(role_map: RoleMap, policy: Policy, request: Request, user: str) -> Decision:
    decision = can_decide(role_map, policy, request, user)
    if not decision:
        return decision
    if user == request.requester and not policy.allow_self_approval:
        return Decision(
            False, "You asked for this promotion, so your approval doesn't count: ask someone else."
        )
    return ALLOW


@dataclass(frozen=True)
class WhoCanApprove:
    """Who may still approve a request, for the release message: the user groups whose roles
    let them, or else up to `limit` people (with how many more there are)."""

    groups: tuple[str, ...] = ()
    people: tuple[str, ...] = ()
    more: int = 0

    def __bool__(self) -> bool:
        return bool(self.groups or self.people)


def who_can_approve(
    role_map: RoleMap, policy: Policy, request: Request, limit: int = 5
) -> WhoCanApprove:
    """The groups granting the approver role (but one Slack said has nobody in it, or does not
    exist); when none does, the people who hold it and have not approved yet (not the
    requester unless the policy lets them)."""
    scope = request.action.scope
    groups = tuple(
        g
        for g, roles in role_map.groups.items()
        if role_map.grants(roles, scope, policy) and role_map.group_members.get(g) != frozenset()
    )
    if groups:
        return WhoCanApprove(groups=groups)
    done = set(request.approvers)
    people = [
        u
        for u in role_map.members
        if u not in done
        and (u != request.requester or policy.allow_self_approval)
        and role_map.grants(role_map.roles_of(u), scope, policy)
    ]
    return WhoCanApprove(people=tuple(people[:limit]), more=max(0, len(people) - limit))


def approvers_to_tell(
    role_map: RoleMap,
    policy: Policy,
    scope: Scope,
    requester: str,
    approved: tuple[str, ...] = (),
    limit: int = 100,
) -> list[str]:
    """The people to tell that a request of `requester` waits for them: those the role map
    lets approve it under `policy` (configured people, then members of granting user groups
    once known), never the requester, nor anyone who approved already; at most `limit`."""
    people = list(role_map.members)
    for group, roles in role_map.groups.items():
        if role_map.grants(roles, scope, policy):
            people += sorted(role_map.group_members.get(group, ()))
    told: list[str] = []
    for person in people:
        if person == requester or person in approved or person in told:
            continue
        if role_map.grants(role_map.roles_of(person), scope, policy):
            told.append(person)
    return told[:limit]


def approvers_possible(
    role_map: RoleMap, policy: Policy, scope: Scope, requester: str
) -> int | None:
    """How many people could approve `requester`'s request under `policy`: configured people
    and the known members of user groups granting it; None while such a group has not been
    looked up yet (its size is known only once Slack answers)."""
    people = set(role_map.members)
    for group, roles in role_map.groups.items():
        if role_map.grants(roles, scope, policy):
            members = role_map.group_members.get(group)
            if members is None:
                return None
            people |= members
    return sum(
        1
        for u in people
        if (u != requester or policy.allow_self_approval)
        and role_map.grants(role_map.roles_of(u), scope, policy)
    )


def counted_approvers(role_map: RoleMap, policy: Policy, request: Request) -> list[str]:
    """The approvers whose approval still holds under the role map and policy as they are now."""
    return [a.user for a in request.approvals if can_approve(role_map, policy, request, a.user)]
