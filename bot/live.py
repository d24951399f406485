"""The rules in force while the bot runs: the config file, read again on SIGHUP or when it
changes, and the members of its Slack user groups, looked up now and then.

The workflow is handed a new `Rules` object each time (`Workflow.reload`); nothing is changed
in place. A file that does not validate is refused with one log line and the rules stay as
they were; a group Slack can't answer for keeps the members it had at the last good answer.
Both run as jobs of the bot's scheduler (`schedule`): `config` looks at the file every few
seconds (at once on SIGHUP), `groups` asks Slack every `groups_every` seconds.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel

from bot.config import ConfigError, load_config
from bot.core.cdevents import Receiver
from bot.core.policy import format_duration
from bot.core.rules import Rules
from bot.core.scheduler import RunAgainIn, Scheduler
from bot.core.workflow import Workflow
from bot.transports.slack.groups import GroupLookupError

log = logging.getLogger("promote-bot.config")

FILE_CHECK_SECONDS = 3.0  # how often the config file's modification time is looked at
RETRY_SECONDS = 30.0  # how soon groups are asked for again after Slack failed
RETRY_AFTER_CAP = 300.0  # a rate limit's Retry-After is honoured up to this

GroupMembers = Callable[[str], Awaitable[frozenset[str]]]
GroupAnswers = Mapping[str, frozenset[str] | BaseException]  # group → members, or why not


async def ask_groups(group_members: GroupMembers, groups: Iterable[str]) -> GroupAnswers:
    """Ask for the members of every group at once; each answer, or what went wrong."""
    groups = list(groups)
    answers = await asyncio.gather(*(group_members(g) for g in groups), return_exceptions=True)
    return dict(zip(groups, answers, strict=True))


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _roles_of(roles: object) -> str:
    return ", ".join(roles) if isinstance(roles, tuple | list) else str(roles)


def _scopes(scopes: object) -> str:
    if isinstance(scopes, frozenset):
        return ", ".join(sorted(scopes)) or "no scopes"
    return str(scopes)


def _value(value: object) -> str:
    if isinstance(value, timedelta):
        return format_duration(value)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(map(str, value)) + "]"
    return "unset" if value is None else str(value)


def _policy_change(old: object, new: object) -> str:
    """ "approvals 1 → 2, expires_after 24h → 2h": the keys that differ."""
    if not (isinstance(old, BaseModel) and isinstance(new, BaseModel)):
        return ""
    a, b = _keys(old), _keys(new)
    return ", ".join(
        f"{k} {_value(a.get(k))} → {_value(b.get(k))}" for k in {**a, **b} if a.get(k) != b.get(k)
    )


def _keys(policy: BaseModel, **dump: bool) -> dict[str, object]:
    """A policy's keys as the config file writes them: a provider's own keys (`whop_statuses`,
    kept in `allow`) as keys of their own."""
    keys = policy.model_dump(**dump)
    return {**{k: v for k, v in keys.items() if k != "allow"}, **keys.get("allow", {})}


def _named(
    kind: str,
    old: Mapping[str, object],
    new: Mapping[str, object],
    show: Callable[[object], str] = str,
    change: Callable[[object, object], str] | None = None,
) -> str | None:
    """ "members added U03CAROL (release-manager), removed U02BOB (policy-engineer), changed
    U01ALICE (release-manager → policy-engineer)", or None when nothing changed."""
    added = sorted(new.keys() - old.keys())
    removed = sorted(old.keys() - new.keys())
    changed = sorted(k for k in new.keys() & old.keys() if new[k] != old[k])
    if not (added or removed or changed):
        return None
    parts = [f"added {k} ({show(new[k])})" for k in added]
    parts += [f"removed {k} ({show(old[k])})" for k in removed]
    for k in changed:
        what = change(old[k], new[k]) if change else f"{show(old[k])} → {show(new[k])}"
        parts.append(f"changed {k} ({what})")
    return f"{kind} " + ", ".join(parts)


def _providers(rules: Rules) -> dict[str, object]:
    """Each provider's config section (its aliases, ids), or what it tells in help."""
    return {
        name: getattr(p, "section", None) or (p.help_line(), tuple(p.targets()))
        for name, p in rules.providers.items()
    }


def what_changed(old: Rules, new: Rules) -> str:
    """Who and what a reload added, removed or changed, for the log: user and group ids with
    their roles, roles with their scopes, policy patterns with the keys that changed, the
    providers whose section changed (the config file holds no secret), or "nothing changed"."""
    a, b = old.role_map, new.role_map
    parts = [
        _named("roles", a.roles, b.roles, _scopes),
        _named("members", a.members, b.members, _roles_of),
        _named("groups", a.groups, b.groups, _roles_of),
        _named("policies", dict(old.policies), dict(new.policies), _policy_keys, _policy_change),
        _named(
            "receivers",
            {r.name: r for r in old.notify},
            {r.name: r for r in new.notify},
            _receiver,
            _receiver_change,
        ),
    ]
    was, now = _providers(old), _providers(new)
    if touched := sorted(n for n in was.keys() | now.keys() if was.get(n) != now.get(n)):
        parts.append(f"providers changed {', '.join(touched)}")
    return "; ".join(p for p in parts if p) or "nothing changed"


def _receiver(receiver: object) -> str:
    """A `[[notify]]` receiver by its host only: the rest of its URL may be a token, and its
    secret is never shown."""
    if not isinstance(receiver, Receiver):
        return str(receiver)
    return f"{urlsplit(receiver.url).netloc}, {len(receiver.events)} events"


def _receiver_change(old: object, new: object) -> str:
    """The keys of a receiver that changed ("url, secret"), never their values."""
    if not (isinstance(old, Receiver) and isinstance(new, Receiver)):
        return ""
    keys = ("url", "events", "targets", "secret")
    return ", ".join(k for k in keys if getattr(old, k) != getattr(new, k))


def _policy_keys(policy: object) -> str:
    """The keys a policy sets apart from the defaults: "approvals 2, allow_self_approval True"."""
    if not isinstance(policy, BaseModel):
        return str(policy)
    given = _keys(policy, exclude_defaults=True)
    return ", ".join(f"{k} {_value(v)}" for k, v in given.items()) or "the defaults"


class LiveRules:
    """Keeps `workflow.rules` following the config file and the user groups' members."""

    def __init__(
        self,
        workflow: Workflow,
        path: Path,
        group_members: GroupMembers | None,
        *,
        groups_every: float = 300.0,
    ) -> None:
        self.workflow = workflow
        self.path = path
        self.group_members = group_members
        self.groups_every = groups_every
        self.base = workflow.rules  # as the file says, groups unresolved
        self.resolved: dict[str, frozenset[str]] = {}  # the last good answer per group
        self._stamp = _stamp(path)
        self._hup = False
        self._redraw = False  # the role map changed: open requests' messages should show it
        self._scheduler: Scheduler | None = None
        self.groups_due_in = groups_every  # when the groups job looks next (sooner on failure)

    # --- the config file -----------------------------------------------------------------

    def hangup(self) -> None:
        """SIGHUP: read the file again now (safe to call from a signal handler)."""
        self._hup = True
        if self._scheduler is not None:
            self._scheduler.wake("config")

    def reload(self, why: str = "SIGHUP") -> bool:
        """Read and validate the file; put it in force if it is valid. True if it was."""
        self._stamp = _stamp(self.path)
        try:
            new = load_config(self.path)
            added = set(new.providers) - set(self.workflow.providers)
            if added:
                raise ConfigError(
                    f"{self.path}: adds {', '.join(sorted(added))}, which needs a restart "
                    "(provider clients are built at start-up)"
                )
        except ConfigError as exc:
            log.error("config reload refused (%s), the previous config stays: %s", why, exc)
            return False
        changes = what_changed(self.base, new)
        self.base = new
        self._apply()
        log.info("config reloaded from %s (%s): %s", self.path, why, changes)
        return True

    def file_changed(self) -> bool:
        return _stamp(self.path) != self._stamp

    # --- user groups ---------------------------------------------------------------------

    async def refresh_groups(self, asked: GroupAnswers | None = None) -> bool:
        """Ask Slack for the members of every group in the config; True if all answered.
        `asked`: what `ask_groups` already got for them (start-up asks while it checks the
        token, and takes the answers only once the token proved good).

        A group Slack fails for keeps its last good members; one Slack says does not exist
        has none."""
        if self.group_members is None:
            return True
        groups = list(self.base.role_map.groups)
        if asked is None or set(asked) != set(groups):
            asked = await ask_groups(self.group_members, groups)
        ok, wait = True, RETRY_SECONDS
        for group in groups:
            answer = asked[group]
            if isinstance(answer, frozenset):
                self.resolved[group] = answer
            elif isinstance(answer, GroupLookupError) and answer.gone:
                log.warning("user group %s: %s; its members get no roles", group, answer.message)
                self.resolved[group] = frozenset()
            else:
                ok = False
                message = answer.message if isinstance(answer, GroupLookupError) else repr(answer)
                kept = "keeping the members it had" if group in self.resolved else "no members yet"
                log.warning("user group %s could not be read (%s); %s", group, message, kept)
                asked_to_wait = getattr(answer, "retry_after", None)
                if asked_to_wait is not None:  # Slack said when: then, within reason
                    wait = max(1.0, min(asked_to_wait, RETRY_AFTER_CAP))
        for gone in set(self.resolved) - set(groups):
            del self.resolved[gone]
        self.groups_due_in = self.groups_every if ok else min(self.groups_every, wait)
        self._apply()
        return ok

    async def first_lookup(
        self, asking: asyncio.Future[GroupAnswers], within: float
    ) -> bool | None:
        """Start-up's lookup of the groups (asked while the token was checked), waited for
        `within` seconds at most: past that, the bot serves (its /healthz among it) with the
        groups unresolved, and the groups job asks again as soon as it starts. Its answer
        (True if every group answered), or None when it did not come in time."""
        done, _ = await asyncio.wait({asking}, timeout=within)
        if not done:
            asking.cancel()
            await asyncio.gather(asking, return_exceptions=True)
            log.warning(
                "user groups: Slack did not answer within %g s of start-up; their members get "
                "no roles until it does (asked again in the background)",
                within,
            )
            self.groups_due_in = 0.0
            return None
        return await self.refresh_groups(asking.result())

    def _apply(self) -> None:
        role_map = self.base.role_map.with_group_members(self.resolved)
        if self.workflow.reload(replace(self.base, role_map=role_map)):
            self._redraw = True

    # --- as the scheduler's jobs -------------------------------------------------------------

    def schedule(self, scheduler: Scheduler, file_every: float = FILE_CHECK_SECONDS) -> None:
        """Look at the config file every `file_every` seconds (and on SIGHUP), and refresh the
        groups every `groups_every` seconds, as jobs `config` and `groups` of `scheduler`."""
        self._scheduler = scheduler
        scheduler.add("config", self.check_file, file_every)
        scheduler.add("groups", self.check_groups, self.groups_every, first=self.groups_due_in)

    async def check_file(self) -> None:
        """Reload on SIGHUP or when the file changed; new groups are asked for at once."""
        known = set(self.base.role_map.groups)
        if self._hup:
            self._hup = False
            self.reload("SIGHUP")
        elif self.file_changed():
            self.reload("the file changed")
        if set(self.base.role_map.groups) - known and self._scheduler is not None:
            self._scheduler.wake("groups")
        await self._redraw_if_changed()

    async def check_groups(self) -> RunAgainIn:
        """Refresh the groups; when to do it next (sooner after a failure)."""
        await self.refresh_groups()
        await self._redraw_if_changed()
        return RunAgainIn(self.groups_due_in)

    async def _redraw_if_changed(self) -> None:
        if self._redraw:
            self._redraw = False
            await self.workflow.refresh_open()
