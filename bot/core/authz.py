"""The role map and the decisions made with it. Pure functions, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field

from bot.core.model import Request, Scope
from bot.core.policy import Policy


@dataclass(frozen=True)
class RoleMap:
    """Roles are sets of scopes; Slack users are given roles."""

    roles: dict[str, frozenset[Scope]] = field(default_factory=dict)
    members: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def roles_of(self, user: str) -> tuple[str, ...]:
        return self.members.get(user, ())

    def scopes_of(self, user: str) -> frozenset[Scope]:
        scopes: set[Scope] = set()
        for role in self.roles_of(user):
            scopes |= self.roles.get(role, frozenset())
        return frozenset(scopes)

    def has_scope(self, user: str, scope: Scope) -> bool:
        return scope in self.scopes_of(user)


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
