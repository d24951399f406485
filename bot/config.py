"""Settings from the environment and the config file (TOML), both validated at start-up.

Any problem becomes a `ConfigError` whose message is one line naming the setting or key.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

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

from bot.core.authz import RoleMap
from bot.core.model import Scope
from bot.core.policy import Policy

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
SLACK_USER = re.compile(r"^[UW][A-Z0-9_]{2,}$")  # _ for readable shell and sandbox users
PROVIDER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
POLICY_PATTERN = re.compile(r"^(znyx|whop|appstore|\*)(:[A-Za-z0-9_.*?-]+){0,2}$")


class ConfigError(Exception):
    """A setting or config key is missing or invalid; the message names it, on one line."""


def _first_error(exc: ValidationError, prefix: str = "") -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"] if p != "__root__")
    msg = err["msg"].removeprefix("Value error, ")
    return f"{prefix}{loc}: {msg}" if loc else msg


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
    promote_bot_db: Path = Path("promote-bot.db")
    promote_bot_lease_seconds: int = Field(default=300, ge=1, le=86400)
    znyx_api_url: AnyHttpUrl = AnyHttpUrl("https://api.znyx.ai")
    znyx_token: SecretStr | None = None
    whop_api_url: AnyHttpUrl = AnyHttpUrl("https://api.whop.com/api/v1")
    whop_api_key: SecretStr | None = None
    asc_api_url: AnyHttpUrl = AnyHttpUrl("https://api.appstoreconnect.apple.com")
    asc_issuer_id: str | None = None
    asc_key_id: str | None = None
    asc_private_key_path: Path | None = None
    asc_private_key: SecretStr | None = None

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
            raise ValueError("an app-level token starts with 'xapp-'")
        return v

    @property
    def socket_mode(self) -> bool:
        return self.slack_app_token is not None


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        err = exc.errors()[0]
        name = str(err["loc"][0]).upper() if err["loc"] else "settings"
        raise ConfigError(f"{name}: {err['msg'].removeprefix('Value error, ')}") from None


def require(settings: Settings, *names: str) -> None:
    """Fail with the first of `names` (field names) that is not set."""
    for name in names:
        if getattr(settings, name) is None:
            raise ConfigError(f"{name.upper()} is not set")


# --- the config file ---------------------------------------------------------------------


WHOP_APP_ID = re.compile(r"^app_[A-Za-z0-9]{1,64}$")
ASC_APP_ID = re.compile(r"^[0-9]{1,20}$")


def _aliases(aliases: dict[str, str], ids: re.Pattern[str], what: str) -> dict[str, str]:
    """Check a table of short names people type → provider ids."""
    for alias, value in aliases.items():
        if not NAME.match(alias):
            raise ValueError(f"{alias!r} is not a valid alias (letters, digits, _ . -)")
        if not ids.match(value):
            raise ValueError(f"{alias} = {value!r} is not {what}")
    return aliases


class ZnyxConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    org: str
    projects: dict[str, str] = {}

    @field_validator("org")
    @classmethod
    def _org(cls, v: str) -> str:
        if not PROVIDER_ID.match(v):
            raise ValueError(f"{v!r} is not a Znyx org id")
        return v

    @field_validator("projects")
    @classmethod
    def _projects(cls, v: dict[str, str]) -> dict[str, str]:
        return _aliases(v, PROVIDER_ID, "a Znyx project id")


class WhopConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    apps: dict[str, str] = {}

    @field_validator("apps")
    @classmethod
    def _apps(cls, v: dict[str, str]) -> dict[str, str]:
        return _aliases(v, WHOP_APP_ID, "a Whop app id (app_…)")


class AppStoreConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    apps: dict[str, str] = {}

    @field_validator("apps")
    @classmethod
    def _apps(cls, v: dict[str, str]) -> dict[str, str]:
        return _aliases(v, ASC_APP_ID, "an App Store Connect app id (digits)")


class BotConfig(BaseModel):
    """The validated config file: role map, provider aliases and approval policies."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    roles: dict[str, frozenset[Scope]]
    members: dict[str, tuple[str, ...]] = {}
    znyx: ZnyxConfig | None = None
    whop: WhopConfig | None = None
    appstore: AppStoreConfig | None = None
    policies: dict[str, Policy] = {}

    @field_validator("roles", mode="before")
    @classmethod
    def _roles(cls, v: object) -> object:
        if isinstance(v, dict):
            known = ", ".join(s.value for s in Scope)
            for role, scopes in v.items():
                if not NAME.match(str(role)):
                    raise ValueError(f"{role!r} is not a valid role name")
                for scope in scopes if isinstance(scopes, list) else []:
                    if scope not in {s.value for s in Scope}:
                        raise ValueError(
                            f"role {role!r} has unknown scope {scope!r} (known: {known})"
                        )
        return v

    @field_validator("policies")
    @classmethod
    def _patterns(cls, v: dict[str, Policy]) -> dict[str, Policy]:
        for pattern in v:
            if not POLICY_PATTERN.match(pattern):
                raise ValueError(
                    f"{pattern!r} is not a target pattern like 'znyx:guardrails:prod' or 'whop:*'"
                )
        return v

    @model_validator(mode="after")
    def _references(self) -> BotConfig:
        for user, roles in self.members.items():
            if not SLACK_USER.match(user):
                raise ValueError(f"members: {user!r} is not a Slack user id (like U012AB3CD)")
            for role in roles:
                if role not in self.roles:
                    raise ValueError(f"members: {user} has unknown role {role!r}")
        for pattern, policy in self.policies.items():
            for role in policy.approver_roles or ():
                if role not in self.roles:
                    raise ValueError(f"policies.{pattern}: unknown approver role {role!r}")
        return self

    @property
    def role_map(self) -> RoleMap:
        return RoleMap(roles=dict(self.roles), members=dict(self.members))


def parse_config(data: dict, source: str = "config") -> BotConfig:
    try:
        return BotConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_first_error(exc)}") from None


def load_config(path: Path) -> BotConfig:
    """Read and validate the TOML config file at `path`."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"PROMOTE_BOT_CONFIG: {path} does not exist (copy promote-bot.example.toml)"
        ) from None
    except OSError as exc:
        raise ConfigError(f"PROMOTE_BOT_CONFIG: cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_config(data, source=str(path))
