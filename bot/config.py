"""Settings from the environment and the config file (TOML), both validated at start-up.

Any problem becomes a `ConfigError` whose message is one line naming the setting or key.
"""

from __future__ import annotations

import codecs
import ipaddress
import os
import re
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from fnmatch import fnmatchcase
from pathlib import Path
from types import UnionType
from typing import Any, Literal, TypeVar, Union, get_args, get_origin
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.core import authz
from bot.core.authz import RoleMap
from bot.core.cdevents import ALIASES, MILESTONES, Receiver
from bot.core.freezes import TimeWindow, parse_weekly
from bot.core.policy import Policy, pattern_for
from bot.core.rules import Rules
from bot.providers.registry import PROVIDERS
from bot.providers.spec import PolicyKey, setting_problem

_URI_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
SLACK_USER = re.compile(r"^[UW][A-Z0-9_]{2,}$")  # _ for readable shell and sandbox users
SLACK_GROUP = re.compile(r"^S[A-Z0-9_]{2,}$")  # a user group (its members get the roles)
SLACK_CHANNEL = re.compile(r"^[CG][A-Z0-9_]{2,}$")  # a public or private channel
POLICY_PATTERN = re.compile(
    r"^(" + "|".join(map(re.escape, PROVIDERS)) + r"|\*)(:[A-Za-z0-9_.*?-]+){0,2}$"
)
T = TypeVar("T")
SCOPES: dict[str, str] = {s: what for spec in PROVIDERS.values() for s, what in spec.scopes.items()}
# The policy keys providers add (`whop_statuses`): key → (provider, what it may list).
POLICY_KEYS: dict[str, tuple[str, PolicyKey]] = {
    key: (name, spec_key)
    for name, spec in PROVIDERS.items()
    for key, spec_key in spec.policy_keys.items()
}


class ConfigError(Exception):
    """A setting or config key is missing or invalid; the message names it, on one line."""


_EXPECTED = {
    "list_type": 'expected a list, like ["a", "b"]',
    "tuple_type": 'expected a list, like ["a", "b"]',
    "set_type": 'expected a list, like ["a", "b"]',
    "frozen_set_type": 'expected a list, like ["a", "b"]',
    "dict_type": "expected a table (key = value pairs)",
    "model_type": "expected a table (key = value pairs)",
    "model_attributes_type": "expected a table (key = value pairs)",
    "string_type": "expected a string in quotes",
    "int_type": "expected a whole number",
    "int_parsing": "expected a whole number",
    "int_from_float": "expected a whole number",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
    "missing": "this key is required",
}


def _allowed_keys(root: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    """The keys a table at `loc` (inside `root`) may have, for an unknown-key error."""
    current: Any = root
    parts = list(loc)
    while parts and current is not None:
        part = parts.pop(0)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            current = field.annotation if field else None
        elif get_origin(current) is dict:
            current = get_args(current)[1]
        else:
            current = None
        while get_origin(current) in (Union, UnionType):  # `Model | None`
            current = next((a for a in get_args(current) if a is not type(None)), None)
    if current is Policy:  # its `allow` is written as the providers' own keys
        return [k for k in Policy.model_fields if k != "allow"] + list(POLICY_KEYS)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _first_error(
    exc: ValidationError,
    prefix: str = "",
    model: type[BaseModel] | None = None,
    extra: Sequence[str] = (),
) -> str:
    """The first problem as one line, in plain words: `where: what was wrong`."""
    err = exc.errors()[0]
    loc = tuple(p for p in err["loc"] if p != "__root__")
    where = prefix + ".".join(str(p) for p in loc)
    kind = err["type"]
    if kind == "extra_forbidden" and model is not None:
        allowed = [*_allowed_keys(model, loc[:-1]), *(extra if len(loc) == 1 else ())]
        msg = f"unknown key; allowed keys here: {', '.join(allowed)}"
    elif kind in _EXPECTED:
        msg = _EXPECTED[kind]
    elif kind == "greater_than_equal":
        msg = f"must be at least {err['ctx']['ge']}"
    elif kind == "less_than_equal":
        msg = f"must be at most {err['ctx']['le']}"
    else:
        msg = err["msg"].removeprefix("Value error, ")
    where = where.rstrip(".")
    return f"{where}: {msg}" if where else msg


# --- the environment ---------------------------------------------------------------------


class Settings(BaseSettings):
    """Everything read from environment variables (names are the field names, upper-cased)."""

    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False)

    slack_bot_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_app_token: SecretStr | None = None
    slack_api_url: AnyHttpUrl = AnyHttpUrl("https://slack.com/api/")
    port: int = Field(default=3000, ge=0, le=65535)
    promote_bot_config: Path = Path("promote-bot.toml")
    promote_bot_db: Path | str = Path("promote-bot.db")  # a SQLite file, or a postgresql:// URI
    promote_bot_lease_seconds: int = Field(default=30, ge=1, le=3600)
    promote_bot_shutdown_seconds: float = Field(default=25.0, ge=0, le=3600)
    promote_bot_groups_refresh: int = Field(default=300, ge=10, le=86400)
    promote_bot_workers: int = Field(default=32, ge=1, le=1000)  # work after acks, at once
    # How long acknowledged work is kept once done: Slack delivers a payload again within
    # minutes, and is recognised by its key while it is kept (10 minutes to 30 days).
    promote_bot_inbox_retention: int = Field(default=3600, ge=600, le=30 * 86400)
    # Seconds between two background reads of an open request's preview (drift).
    promote_bot_drift_seconds: int = Field(default=300, ge=10, le=86400)
    # How long start-up asks again a Slack that can't be reached or is failing (auth.test).
    promote_bot_slack_wait_seconds: float = Field(default=120.0, ge=0, le=3600)
    log_level: str | None = None  # unset: INFO for serve, WARNING for the shell
    log_format: Literal["text", "json"] = "text"

    @field_validator("promote_bot_db", mode="before")
    @classmethod
    def _db(cls, v: object) -> Path | str:
        """A libpq URI (postgresql://… or postgres://…) stays a string; another URI is refused
        (never shown: it may hold a password); anything else is the path of a SQLite file."""
        if isinstance(v, str) and v.lower().startswith(("postgresql://", "postgres://")):
            return v
        if isinstance(v, str) and (scheme := _URI_SCHEME.match(v)):
            raise ValueError(
                f"a {scheme.group(1)}:// URI is not a database promote-bot can use: expected the "
                "path of a SQLite file (like ./promote-bot.db, created if missing) or a "
                "postgresql://user:password@host:5432/database URI"
            )
        return Path(v) if isinstance(v, str) else v  # type: ignore[return-value]

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, v: str | None) -> str | None:
        if v is None:
            return None
        names = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
        if v.upper() not in names:
            raise ValueError(f"expected one of {', '.join(names)}")
        return v.upper()

    @field_validator("slack_bot_token")
    @classmethod
    def _bot_token(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and not v.get_secret_value().startswith("xoxb-"):
            raise ValueError("a bot token starts with 'xoxb-'")
        return v

    @field_validator("slack_app_token")
    @classmethod
    def _app_token(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and not v.get_secret_value().startswith("xapp-"):
            raise ValueError(
                "an app-level token starts with 'xapp-' (Basic Information → App-Level Tokens, "
                "with connections:write); it selects Socket Mode: unset it to use HTTP mode "
                "with SLACK_SIGNING_SECRET instead"
            )
        return v

    @property
    def socket_mode(self) -> bool:
        return self.slack_app_token is not None


def load_settings() -> Settings:
    settings, problems = load_settings_all()
    if problems:
        raise ConfigError("\n".join(problems))
    return settings


def load_settings_all() -> tuple[Settings, list[str]]:
    """The settings, and every problem with them (one line each); a setting with a problem
    takes its default, so that start-up can go on looking for more problems."""
    try:
        return Settings(), []
    except ValidationError as exc:
        problems = [setting_problem(err, Settings) for err in exc.errors()]
        bad = {str(err["loc"][0]) for err in exc.errors() if err["loc"]}
        defaults = {f: Settings.model_fields[f].default for f in bad if f in Settings.model_fields}
        return Settings(**defaults), problems


# --- the config file ---------------------------------------------------------------------


class _File(BaseModel):
    """The config file less the providers' own tables."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    roles: dict[str, frozenset[str]]
    members: dict[str, tuple[str, ...]] = {}
    policies: dict[str, Policy] = {}
    # How times are shown, and `--at` read for someone whose own time zone Slack doesn't say.
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, v: str) -> str:
        return _zone(v, "")

    @field_validator("roles", mode="before")
    @classmethod
    def _roles(cls, v: object) -> object:
        if isinstance(v, dict):
            known = ", ".join(SCOPES)
            for role, scopes in v.items():
                if not NAME.match(str(role)):
                    raise ValueError(f"{role!r} is not a valid role name")
                for scope in scopes if isinstance(scopes, list) else []:
                    if scope not in SCOPES:
                        raise ValueError(
                            f"role {role!r} has unknown scope {scope!r} (known: {known})"
                        )
        return v

    @field_validator("policies")
    @classmethod
    def _patterns(cls, v: dict[str, Policy]) -> dict[str, Policy]:
        for pattern in v:
            if not POLICY_PATTERN.match(pattern):
                example = next(iter(PROVIDERS), "name")
                raise ValueError(
                    f"{pattern!r} is not a target pattern like '{example}:*' "
                    f"(targets start with {', '.join(PROVIDERS)})"
                )
        return v

    @model_validator(mode="after")
    def _references(self) -> _File:
        for user, roles in self.members.items():
            if not SLACK_USER.match(user) and not SLACK_GROUP.match(user):
                raise ValueError(
                    f"members: {user!r} is not a Slack user id (like U012AB3CD) "
                    "or user group id (like S012AB3CD)"
                )
            for role in roles:
                if role not in self.roles:
                    raise ValueError(f"members: {user} has unknown role {role!r}")
        for pattern, policy in self.policies.items():
            for role in policy.approver_roles or ():
                if role not in self.roles:
                    raise ValueError(f"policies.{pattern}: unknown approver role {role!r}")
            if policy.channel is not None and not SLACK_CHANNEL.match(policy.channel):
                raise ValueError(
                    f"policies.{pattern}: channel: {policy.channel!r} is not a Slack channel id "
                    "(like C012AB3CD: the channel's details, at the bottom)"
                )
        return self


class _Freeze(BaseModel):
    """One `[[freeze]]` or `[[window]]` table: targets, why, and a dated (`from`/`until`) or
    `weekly` window."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    targets: list[str] = Field(min_length=1)
    reason: str | None = Field(default=None, min_length=1, max_length=200)
    timezone: str
    start: datetime | str | None = Field(default=None, alias="from")
    until: datetime | str | None = None
    weekly: str | None = None


def _local_time(value: datetime | str, key: str) -> datetime:
    """A local date and time (TOML `2026-12-20T00:00` or a string of it), without an offset."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(
                f"{key}: {value!r} is not a date and time like 2026-12-20T00:00"
            ) from None
    if value.tzinfo is not None:
        raise ValueError(f"{key}: write it without an offset: it is read in `timezone`")
    return value


_WINDOW_KINDS = {"freeze": "Freeze", "window": "Allow window"}  # table → default reason


def _zone(name: str, key: str = "timezone") -> str:
    """`name` if it is an IANA time zone, else ValueError saying so (naming `key`)."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        where = f"{key}: " if key else ""
        raise ValueError(
            f"{where}{name!r} is not a time zone like 'Europe/Berlin' or 'UTC'"
        ) from None
    return name


def _freeze(index: int, table: object, kind: str = "freeze") -> TimeWindow:
    """Build one `[[freeze]]` (or `[[window]]`) from its table, or raise ValueError saying
    what is wrong."""
    model = _Freeze.model_validate(table)
    model = model.model_copy(update={"reason": model.reason or _WINDOW_KINDS[kind]})
    assert model.reason is not None
    name = f"{kind} {index}"
    _zone(model.timezone)
    for pattern in model.targets:
        if not POLICY_PATTERN.match(pattern):
            raise ValueError(f"targets: {pattern!r} is not a target pattern like 'name:*:prod'")
    dated = model.start is not None or model.until is not None
    if dated and model.weekly is not None:
        raise ValueError("give either `from` and `until`, or `weekly`, not both")
    if model.weekly is not None:
        weekly = parse_weekly(model.weekly)
        return TimeWindow(name, tuple(model.targets), model.reason, model.timezone, weekly=weekly)
    if model.start is None or model.until is None:
        raise ValueError(
            "a window needs `from` and `until` (e.g. 2026-12-20T00:00), or `weekly` "
            "(e.g. 'Fri 16:00 - Mon 08:00')"
        )
    start, until = _local_time(model.start, "from"), _local_time(model.until, "until")
    freeze = TimeWindow(name, tuple(model.targets), model.reason, model.timezone, start, until)
    bounds = freeze.dated_window()  # as instants: a DST change between them counts
    if bounds.end <= bounds.start:
        raise ValueError("`until` must be after `from`")
    return freeze


def _tables(
    tables: object,
    source: str,
    rules: Rules,
    kind: tuple[str, str, str],
    model: type[BaseModel],
    build: Callable[[int, object], T],
) -> list[tuple[str, T]]:
    """Each `[[<name>]]` table built by `build(index, table)`, with the label errors name it
    by; one line naming the table for any problem, and for a `targets` pattern that matches
    no target of the config. `kind`: (table name, what each is, the key that labels it)."""
    name, each, key = kind
    if not isinstance(tables, list):
        raise ConfigError(f"{source}: {name}: write each {each} as a [[{name}]] table")
    every = [t for p in rules.providers.values() for t in p.targets()]
    built = []
    for index, table in enumerate(tables, start=1):
        label = f"{name} {index}"
        if isinstance(table, dict) and isinstance(table.get(key), str):
            label += f" ({table[key]!r})"
        try:
            item = build(index, table)
        except ValidationError as exc:
            raise ConfigError(
                f"{source}: [[{name}]] {label}: {_first_error(exc, model=model)}"
            ) from None
        except ValueError as exc:
            raise ConfigError(f"{source}: [[{name}]] {label}: {exc}") from None
        for pattern in getattr(item, "targets", ()):
            if not any(fnmatchcase(t, pattern) for t in every):
                raise ConfigError(
                    f"{source}: [[{name}]] {label}: targets: {pattern!r} matches no target of "
                    "this config"
                )
        built.append((label, item))
    return built


def _freezes(
    tables: object, source: str, rules: Rules, kind: str = "freeze"
) -> tuple[TimeWindow, ...]:
    """The `[[freeze]]` (or `[[window]]`) tables, in file order."""

    def build(index: int, table: object) -> TimeWindow:
        return _freeze(index, table, kind)

    named = (kind, "window", "reason")
    return tuple(f for _, f in _tables(tables, source, rules, named, _Freeze, build))


class _Notify(BaseModel):
    """One `[[notify]]` table: a receiver of the requests' milestones, as CDEvents."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str
    name: str | None = None
    events: list[str] = Field(default_factory=lambda: list(MILESTONES), min_length=1)
    targets: list[str] = Field(default_factory=lambda: ["*"], min_length=1)
    secret_env: str | None = None  # the variable holding the HMAC key
    secret: str | None = None  # refused, with why: the file holds no secret


SECRET_MIN = 16  # an HMAC key shorter than this is guessable


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _receiver(table: object, environ: dict[str, str]) -> Receiver:
    """Build one receiver from its table, or raise ValueError saying what is wrong."""
    model = _Notify.model_validate(table)
    try:
        url = urlsplit(model.url)
        host = url.hostname or ""
        url.port  # noqa: B018 - a port that is no number raises here
    except ValueError:
        raise ValueError(f"url: {model.url!r} is not a URL") from None
    if url.username is not None or url.password is not None:
        raise ValueError("url: no user or password in it; the receiver checks `secret`")
    if not host or url.scheme not in ("https", "http"):
        raise ValueError(f"url: {model.url!r} is not an https:// URL")
    if url.scheme == "http" and not _loopback(host):
        raise ValueError(
            "url: events go over https, or over http only to a loopback address "
            f"(127.0.0.1, ::1, localhost); {host} is not one"
        )
    name = model.name or host
    if not NAME.match(name):
        raise ValueError(f"name: {name!r} is not a name like 'sleuth' (letters, digits, . _ -)")
    events = []
    for event in model.events:
        event = ALIASES.get(event, event)
        if event not in MILESTONES:
            raise ValueError(f"events: unknown event {event!r} (known: {', '.join(MILESTONES)})")
        events.append(event)
    for pattern in model.targets:
        if not POLICY_PATTERN.match(pattern):
            raise ValueError(f"targets: {pattern!r} is not a target pattern like 'name:*:prod'")
    if model.secret is not None:
        raise ValueError(
            "secret: the config file holds no secret: put it in an environment variable and "
            "name that variable in `secret_env`"
        )
    if model.secret_env is None:
        raise ValueError(
            "secret_env: name the environment variable holding the secret the receiver checks "
            "the signature with"
        )
    secret = environ.get(model.secret_env)
    if not secret:
        raise ValueError(f"secret_env: the environment variable {model.secret_env} is not set")
    if len(secret) < SECRET_MIN:
        raise ValueError(
            f"secret_env: {model.secret_env} holds fewer than {SECRET_MIN} characters: use a"
            " long random string"
        )
    return Receiver(name, model.url, frozenset(events), tuple(model.targets), secret)


def _receivers(tables: object, source: str, rules: Rules) -> tuple[Receiver, ...]:
    environ = dict(os.environ)
    kind = ("notify", "receiver", "name")
    built = _tables(
        tables, source, rules, kind, _Notify, lambda _, table: _receiver(table, environ)
    )
    receivers: list[Receiver] = []
    for label, receiver in built:
        if any(r.name == receiver.name for r in receivers):
            raise ConfigError(
                f"{source}: [[notify]] {label}: another receiver is named {receiver.name!r}"
                " (the name defaults to the URL's host): give each its own `name`"
            )
        receivers.append(receiver)
    return tuple(receivers)


def _provider_keys(policies: object, source: str) -> object:
    """The policy tables with the keys providers add (`whop_statuses = ["approved"]`) moved
    into each policy's `allow`, checked: a list of the provider's own values, under a pattern
    that can match that provider's targets."""
    if not isinstance(policies, dict):
        return policies
    tables = {}
    for pattern, table in policies.items():
        if not isinstance(table, dict):
            tables[pattern] = table
            continue
        where = f"{source}: policies.{pattern}"
        if "allow" in table:
            keys = ", ".join(_allowed_keys(_File, ("policies", pattern)))
            raise ConfigError(f"{where}.allow: unknown key; allowed keys here: {keys}")
        table, allow = dict(table), {}
        for key in [k for k in table if k in POLICY_KEYS]:
            provider, spec = POLICY_KEYS[key]
            values = table.pop(key)
            known = ", ".join(spec.values)
            if (
                not isinstance(values, list)
                or not values
                or not all(isinstance(v, str) for v in values)
            ):
                raise ConfigError(
                    f'{where}.{key}: expected a list, like ["{spec.example}"], each '
                    f"{spec.what} (known: {known})"
                )
            for value in values:
                if value not in spec.values:
                    raise ConfigError(
                        f"{where}.{key}: {value!r} is not {spec.what} (known: {known})"
                    )
            prefix = str(pattern).split(":", 1)[0]
            if prefix not in ("*", provider):
                raise ConfigError(
                    f"{where}.{key}: it is about {provider} targets, and this pattern matches "
                    f"only {prefix} ones: put it under a pattern like '{provider}:*'"
                )
            allow[key] = tuple(dict.fromkeys(values))
        tables[pattern] = {**table, "allow": allow} if allow else table
    return tables


def parse_config(data: dict, source: str = "config") -> Rules:
    """Validate the config file's contents and build the core's rules from them."""
    data = dict(data)
    if "policies" in data:
        data["policies"] = _provider_keys(data["policies"], source)
    sections = {name: data.pop(name) for name in PROVIDERS if name in data}
    freeze_tables = data.pop("freeze", [])
    window_tables = data.pop("window", [])
    notify_tables = data.pop("notify", [])
    try:
        file = _File.model_validate(data)
    except ValidationError as exc:
        extra = [*PROVIDERS, "freeze", "window", "notify"]
        raise ConfigError(f"{source}: {_first_error(exc, model=_File, extra=extra)}") from None
    providers, channels = {}, {}
    for name, table in sections.items():
        spec = PROVIDERS[name]
        try:
            section = spec.section.model_validate(table)
        except ValidationError as exc:
            line = _first_error(exc, prefix=name + ".", model=spec.section)
            raise ConfigError(f"{source}: {line}") from None
        providers[name] = spec.rules(section)
        channel = getattr(section, "channel", None)  # where the bot posts about it itself
        if isinstance(channel, str):
            channels[name] = channel
    rules = Rules(
        role_map=RoleMap(
            roles=dict(file.roles),
            members={k: v for k, v in file.members.items() if not SLACK_GROUP.match(k)},
            groups={k: v for k, v in file.members.items() if SLACK_GROUP.match(k)},
        ),
        policies=dict(file.policies),
        providers=providers,
        unconfigured={n: s.label for n, s in PROVIDERS.items() if n not in providers},
        timezone=file.timezone,
        channels=channels,
        provider_scopes={n: frozenset(s.scopes) for n, s in PROVIDERS.items()},
    )
    for pattern, policy in rules.policies.items():
        problem = _policy_problem(rules, pattern, policy) or _stage_problem(rules, pattern, policy)
        if problem:
            raise ConfigError(f"{source}: policies.{pattern}: {problem}")
    if freeze_tables:
        rules = replace(rules, freezes=_freezes(freeze_tables, source, rules))
    if window_tables:
        rules = replace(rules, windows=_freezes(window_tables, source, rules, "window"))
    if notify_tables:
        rules = replace(rules, notify=_receivers(notify_tables, source, rules))
    return rules


def _stage_problem(rules: Rules, pattern: str, policy: Policy) -> str | None:
    """Why a policy's `soak` or `auto` can't work for the targets it is the policy of."""
    if policy.auto and policy.approvals != 0:
        return (
            f"auto = true needs approvals = 0 (it has {policy.approvals}): the bot asks for "
            "the promotion itself, so nobody would be asked to approve it"
        )
    if not (policy.auto or policy.soak):
        return None
    governed = [
        t
        for p in rules.providers.values()
        for t in p.targets()
        if pattern_for(t, dict(rules.policies)) == pattern
    ]
    key = "auto = true" if policy.auto else "soak"
    if governed and all(rules.stage_promotion(t) is None for t in governed):
        shown = ", ".join(governed[:3]) + (", …" if len(governed) > 3 else "")
        return (
            f"{key} needs a stage to promote from, and none of its targets ({shown}) has one "
            "(Znyx targets after the first stage do: staging ← dev, prod ← staging)"
        )
    if policy.auto and not any(rules.channel_for(t, policy) for t in governed):
        return (
            "auto = true needs a channel for the bot's own requests: set `channel` here "
            "(a Slack channel id like C012AB3CD) or in the provider's section"
        )
    return None


def _policy_problem(rules: Rules, pattern: str, policy: Policy) -> str | None:
    """Why a policy could never apply, or never be met, under this config; None if it can."""
    emergency = policy.emergency_approvals
    if emergency is not None and emergency < policy.approvals:
        return (
            f"emergency_approvals = {emergency} is below approvals = {policy.approvals}: "
            "break-glass must never need fewer approvals than the normal path"
        )
    name = pattern.split(":", 1)[0]
    if name != "*" and name not in rules.providers:
        label = rules.unconfigured.get(name, name)
        return f"{label} is not configured (no [{name}] in this file), so it never applies"
    providers = [p for p in rules.providers.values() if name in ("*", p.name)]
    targets = [t for p in providers for t in p.targets()]
    matched = {t.split(":", 1)[0] for t in targets if fnmatchcase(t, pattern)}
    if not matched:
        shown = ", ".join(targets[:6]) + (", …" if len(targets) > 6 else "")
        return (
            f"matches no target of this config (its targets: {shown or 'none'}); "
            "a project, app or environment must be named as the config names it"
        )
    role_map = rules.role_map
    for scope in {f.scope for p in providers if p.name in matched for f in p.forms if f.scope}:
        if any(role_map.grants(roles, scope, policy) for roles in role_map.groups.values()):
            continue  # a user group may approve: its size is known only once Slack answers
        # The best case: whoever of those who may request leaves the most people to approve.
        holders = [u for u in role_map.members if role_map.has_scope(u, scope)]
        possible = max(
            (authz.approvers_possible(role_map, policy, scope, h) or 0 for h in holders),
            default=0,
        )
        needed = {
            "approvals": policy.approvals,
            "rollback_approvals": policy.rollback_approvals,
            "emergency_approvals": policy.emergency_approvals,  # when set; else approvals + 1
        }
        for key, count in needed.items():
            if count is None or count <= possible:
                continue
            who = f"members with `{scope}`"
            if policy.approver_roles:
                who += f" in {', '.join(policy.approver_roles)}"
            if not policy.allow_self_approval:
                who += ", less the requester"
            return (
                f"{key} = {count} can never be met: only {possible} configured "
                f"people could approve ({who})"
            )
    return None


def read_toml(path: Path, setting: str = "PROMOTE_BOT_CONFIG: ") -> dict:
    """The TOML file at `path`, as a dict. UTF-8 with a byte-order mark (as some Windows editors
    save it) is read like UTF-8; UTF-16, other encodings and unreadable files are one line
    naming `setting` and saying what is accepted."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"{setting}{path} does not exist (copy promote-bot.example.toml)"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{setting}cannot read {path}: {exc.strerror}") from None
    try:
        return tomllib.loads(_utf8(raw, f"{setting}{path}"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def _utf8(raw: bytes, where: str) -> str:
    """A config file's text: UTF-8, a leading byte-order mark dropped."""
    must = "a config file must be UTF-8 text (in most editors: Save As → Encoding: UTF-8)"
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or b"\x00" in raw:
        raise ConfigError(f"{where} is UTF-16 text, not UTF-8: {must}")
    try:
        return raw.removeprefix(codecs.BOM_UTF8).decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"{where} is not UTF-8 text (line {line} has the byte 0x{raw[exc.start]:02x}): {must}"
        ) from None


def load_config(path: Path, setting: str = "PROMOTE_BOT_CONFIG: ") -> Rules:
    """Read and validate the TOML config file at `path` (named by `setting` when unreadable)."""
    return parse_config(read_toml(path, setting), source=str(path))
