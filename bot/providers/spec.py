"""What a provider module declares, in one place, so that the rest of the bot needs no list of
providers but the registry: its name and label, its scopes, its config section and settings, its
grammar (the core's `ProviderRules`), its client, and its sandbox fake."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.core.ports import Provider
from bot.core.rules import ProviderRules

ALIAS = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def aliases(table: dict[str, str], ids: re.Pattern[str], what: str) -> dict[str, str]:
    """Check a config table of short names people type → provider ids."""
    for alias, value in table.items():
        if not ALIAS.match(alias):
            raise ValueError(f"{alias!r} is not a valid alias (letters, digits, _ . -)")
        if not ids.match(value):
            raise ValueError(f"{alias} = {value!r} is not {what}")
    return table


_NUMBER_KINDS = {
    "int_parsing": "a whole number",
    "int_type": "a whole number",
    "int_from_float": "a whole number",
    "float_parsing": "a number",
    "float_type": "a number",
    "greater_than_equal": "",
    "less_than_equal": "",
    "greater_than": "",
    "less_than": "",
}


def _range(info: FieldInfo | None) -> str:
    """ " from 0 to 65535", from a field's bounds (`Field(ge=…, le=…)`)."""
    low = high = None
    for bound in info.metadata if info is not None else ():
        low = getattr(bound, "ge", low)
        high = getattr(bound, "le", high)
    if low is not None and high is not None:
        return f" from {low} to {high}"
    if low is not None:
        return f" of at least {low}"
    return f" of at most {high}" if high is not None else ""


def setting_problem(err: ErrorDetails, model: type[BaseSettings]) -> str:
    """One environment setting's problem, in words that name it and say what it accepts:
    "PORT: expected a whole number from 0 to 65535, not 'abc'". A value is shown back only
    when it is a number or a choice (never a token, a URL or a database URI)."""
    field = str(err["loc"][0]) if err["loc"] else ""
    name = field.upper() or "settings"
    info = model.model_fields.get(field)
    kind = err["type"]
    given = err.get("input")
    if kind in _NUMBER_KINDS:
        whole = info is not None and info.annotation is int
        what = _NUMBER_KINDS[kind] or ("a whole number" if whole else "a number")
        return f"{name}: expected {what}{_range(info)}, not {given!r}"
    if kind == "literal_error":
        choices = err.get("ctx", {}).get("expected", "another value")
        return f"{name}: expected {choices}, not {given!r}"
    if kind.startswith("url_") and info is not None and info.default is not None:
        return f"{name}: expected a URL like {info.default}"
    return f"{name}: {err['msg'].removeprefix('Value error, ')}"


class SettingError(Exception):
    """A provider's environment settings are missing or invalid; the message names each, one
    line per problem."""

    def __init__(self, *problems: str) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


class ProviderSettings(BaseSettings):
    """A provider's environment variables (names are the field names, upper-cased)."""

    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False)

    def required(self, *names: str) -> None:
        """Fail naming every one of `names` (field names) that is not set."""
        if missing := self.missing(*names):
            raise SettingError(*missing)

    def missing(self, *names: str) -> list[str]:
        """A line for each of `names` (field names) that is not set."""
        return [f"{name.upper()} is not set" for name in names if getattr(self, name) is None]


class Section(BaseModel):
    """A provider's table in the config file; unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


SectionT = TypeVar("SectionT", bound=Section)
SettingsT = TypeVar("SettingsT", bound=ProviderSettings)


@dataclass(frozen=True)
class PolicyKey:
    """A key a provider adds to the config's `[policies."…"]` tables: a list of the values
    its previews may find (a Whop build's status) that the policy lets through."""

    values: tuple[str, ...]  # every value the provider knows
    what: str  # one of them, in words: "a Whop build status"
    example: str  # a value to show in an example: "approved"


@dataclass(frozen=True)
class ProviderSpec(Generic[SectionT, SettingsT]):
    name: str  # the word after /promote, its config table and its targets' prefix
    label: str  # for people
    scopes: Mapping[str, str]  # the provider's own scopes it needs → what they allow
    section: type[SectionT]
    settings: type[SettingsT]
    rules: Callable[[SectionT], ProviderRules]
    client: Callable[[SettingsT], Provider]
    fake: str  # "module:Class" of its fake HTTP API, for the sandbox and the tests
    # its own policy keys (`whop_statuses`), each checked against what its previews find
    policy_keys: Mapping[str, PolicyKey] = field(default_factory=dict)

    def load_settings(self, overrides: Mapping[str, Any] | None = None) -> SettingsT:
        """The provider's settings from the environment, `overrides` (field names) winning."""
        known = self.settings.model_fields
        given = {k: v for k, v in (overrides or {}).items() if k in known}
        try:
            return self.settings(**given)
        except ValidationError as exc:
            problems = [setting_problem(err, self.settings) for err in exc.errors()]
            raise SettingError(*problems) from None

    def build(self, overrides: Mapping[str, Any] | None = None) -> Provider:
        """The provider's client, from its settings; `SettingError` names what is missing."""
        return self.client(self.load_settings(overrides))
