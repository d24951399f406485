"""The rules the core works by, in its own small types: who holds which scopes, the approval
policies, and the configured providers' grammars. The config module builds them from the file."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Protocol, runtime_checkable

from bot.core.authz import RoleMap
from bot.core.cdevents import Receiver
from bot.core.freezes import Freeze, TimeWindow
from bot.core.model import Action, Outcome, Query, Request, Scope
from bot.core.policy import Policy, policy_for


@dataclass(frozen=True)
class CommandForm:
    """One line of `/promote help`: the scope it needs (None: anyone with a role), its usage
    ("/promote <provider> <words…>") and what it does."""

    scope: Scope | None
    usage: str
    what: str
    look: bool = False  # a read-only look (builds, bundles): no request, so no --emergency


class ProviderRules(Protocol):
    """What the core needs of a configured provider: its grammar and how its targets are named.

    Built by the provider's module from its config section (aliases, ids); pure, no I/O."""

    name: str  # the word after /promote, and the first part of its targets
    label: str  # for people
    forms: Sequence[CommandForm]

    def parse(self, args: list[str]) -> Action | Query:
        """The words after the provider's name → its action (or a look at what it has), or
        raise `UsageError`."""
        ...

    def help_line(self) -> str | None:
        """One line of help about what is configured (its projects or apps)."""
        ...

    def targets(self) -> Sequence[str]:
        """Every target its actions can have under this config, for checking policy patterns."""
        ...

    def choices(self, placeholder: str) -> Sequence[str]:
        """The words a `<placeholder>` of its usages can be under this config (its aliases,
        its stages), for completing what people type; () where any word may be."""
        ...

    def rollback(self, action: Action, outcome: Outcome) -> Action | str:
        """The action that restores what `action` replaced, from what its succeeded `outcome`
        recorded (`before` and `installed`), with `undoing` set; or why there is no way back."""
        ...


@runtime_checkable
class StagedRules(Protocol):
    """A provider whose targets are stages in order (Znyx: dev → staging → prod): a target may
    soak what it gets in its source stage, and promote itself when that changes."""

    def stage_promotion(self, target: str) -> Action | None:
        """The promotion into `target` from the stage before it (its `source` set), or None
        when `target` is not a stage with one before it."""
        ...


@dataclass(frozen=True)
class Rules:
    """Everything the core decides with, as the config stands now."""

    role_map: RoleMap = field(default_factory=RoleMap)
    policies: Mapping[str, Policy] = field(default_factory=dict)
    providers: Mapping[str, ProviderRules] = field(default_factory=dict)
    unconfigured: Mapping[str, str] = field(default_factory=dict)  # known provider → its label
    # every known provider, configured or not → the scopes its actions need (who may lift a lock
    # left on a provider the config no longer has)
    provider_scopes: Mapping[str, frozenset[Scope]] = field(default_factory=dict)
    freezes: tuple[Freeze, ...] = ()  # the config's [[freeze]] windows, in file order
    windows: tuple[TimeWindow, ...] = ()  # the config's [[window]] tables: allow windows
    timezone: str = "UTC"  # the config's top-level `timezone`: how times are shown and read
    channels: Mapping[str, str] = field(default_factory=dict)  # provider → its `channel`
    notify: tuple[Receiver, ...] = ()  # the config's [[notify]] receivers of events

    def policy(self, action: Action) -> Policy:
        """The policy of the action's target; a rollback needs its `rollback_approvals`."""
        policy = policy_for(action.target, dict(self.policies))
        if action.undoing is not None and policy.rollback_approvals is not None:
            policy = policy.model_copy(update={"approvals": policy.rollback_approvals})
        return policy

    def policy_of(self, request: Request) -> Policy:
        """The policy `request` is held to: its target's, with one approval more for an
        emergency."""
        policy = self.policy(request.action)
        return policy.for_emergency() if request.emergency else policy

    def provider(self, name: str) -> ProviderRules | None:
        return self.providers.get(name)

    def stage_promotion(self, target: str) -> Action | None:
        """The promotion into `target` from its source stage, when its provider has stages."""
        provider = self.providers.get(target.split(":", 1)[0])
        return provider.stage_promotion(target) if isinstance(provider, StagedRules) else None

    def auto_stages(self) -> tuple[tuple[Action, Policy], ...]:
        """The promotions the bot asks for itself (`auto = true`), with their policies."""
        if not any(p.auto for p in self.policies.values()):
            return ()  # the usual case, at no cost: a config of 900 projects has 2,700 targets
        return self._auto_stages

    @cached_property
    def _auto_stages(self) -> tuple[tuple[Action, Policy], ...]:  # once per config
        found = []
        for provider in self.providers.values():
            for target in provider.targets():
                policy = policy_for(target, dict(self.policies))
                action = self.stage_promotion(target) if policy.auto else None
                if action is not None:
                    found.append((action, policy))
        return tuple(found)

    @property
    def soaks(self) -> bool:
        """Whether any policy has a soak (else nothing waits for one)."""
        return any(p.soak for p in self.policies.values())

    def channel_for(self, target: str, policy: Policy) -> str | None:
        """Where the bot posts its own requests for `target`: the policy's `channel`, else
        its provider's."""
        return policy.channel or self.channels.get(target.split(":", 1)[0])
