"""Parsing `/promote …` text into a command, resolving aliases from the config. Pure."""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.config import ASC_APP_ID, WHOP_APP_ID, BotConfig
from bot.core.model import (
    ZNYX_STAGES,
    Action,
    AppStoreAttach,
    AppStoreEncryption,
    AppStoreExpire,
    WhopPromote,
    ZnyxPromote,
)

USAGE: dict[str, str] = {
    "help": "/promote help",
    "znyx": "/promote znyx <project> <source_env>   e.g. /promote znyx guardrails staging",
    "whop": "/promote whop [<app>] <build_id>   e.g. /promote whop storefront apbu_8f2k",
    "appstore": "/promote appstore <app> <version> <build>   e.g. /promote appstore ios 2.4.0 153",
    "appstore expire": "/promote appstore expire <app> <build>",
    "appstore encryption": "/promote appstore encryption <app> <build> exempt|non-exempt",
    "status": "/promote status <request>   e.g. /promote status 12",
    "history": "/promote history [<target>]   e.g. /promote history znyx:guardrails:prod",
    "cancel": "/promote cancel <request>",
}

_WORD = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_WHOP_BUILD = re.compile(r"^[A-Za-z0-9_]{1,64}$")
_ASC_ID = re.compile(r"^[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}$")  # an opaque id
_ASC_VERSION = re.compile(r"^[0-9]{1,5}(\.[0-9]{1,5}){0,3}$")  # "2.4.0", and build "153"
_TARGET = re.compile(r"^(znyx|whop|appstore)(:[A-Za-z0-9_.-]{1,64}){1,2}$")
_REQUEST_ID = re.compile(r"^#?(\d{1,12})$")


class UsageError(Exception):
    """The input was wrong; `message` says what, `usage` shows the right form."""

    def __init__(self, message: str, usage: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.usage = usage


@dataclass(frozen=True)
class Help:
    pass


@dataclass(frozen=True)
class Promote:
    action: Action


@dataclass(frozen=True)
class Status:
    request_id: int


@dataclass(frozen=True)
class History:
    target: str | None = None


@dataclass(frozen=True)
class Cancel:
    request_id: int


Command = Help | Promote | Status | History | Cancel


def _clean(text: str) -> list[str]:
    return text.replace("\u00a0", " ").split()


def _shown(word: str) -> str:
    """A user's word, safe to echo back: short, and never able to ping or format."""
    word = word[:40] + ("…" if len(word) > 40 else "")
    return "`" + word.replace("`", "'") + "`"


def parse_request_id(word: str, usage: str) -> int:
    match = _REQUEST_ID.match(word)
    if not match:
        raise UsageError(f"{_shown(word)} is not a request number.", usage)
    return int(match.group(1))


def _parse_znyx(args: list[str], config: BotConfig) -> Promote:
    usage = USAGE["znyx"]
    if config.znyx is None:
        raise UsageError("Znyx is not configured on this bot (no [znyx] in its config).")
    if len(args) != 2:
        raise UsageError("`znyx` takes a project and a source environment.", usage)
    project, source = args
    if not _WORD.match(project):
        raise UsageError(f"{_shown(project)} is not a project name.", usage)
    projects = config.znyx.projects
    by_id = {pid: alias for alias, pid in projects.items()}
    alias = project if project in projects else by_id.get(project)
    if alias is None:
        known = ", ".join(sorted(projects)) or "none configured"
        raise UsageError(f"Unknown Znyx project {_shown(project)}. Known: {known}.", usage)
    env = source.lower()
    if env not in ZNYX_STAGES:
        raise UsageError(
            f"Unknown environment {_shown(source)}. Environments: {', '.join(ZNYX_STAGES)}.", usage
        )
    if env == ZNYX_STAGES[-1]:
        raise UsageError(
            f"`{env}` is the last stage: there is nothing to promote it to. "
            "Name the stage to promote *from*: dev (→ staging) or staging (→ prod).",
            usage,
        )
    action = ZnyxPromote(
        org_id=config.znyx.org, project=alias, project_id=projects[alias], source_env=env
    )
    return Promote(action)


def _app(
    name: str, apps: dict[str, str], ids: re.Pattern[str], what: str, usage: str
) -> tuple[str, str]:
    """An alias from the config, or an id (shown by its alias when it has one)."""
    if name in apps:
        return name, apps[name]
    if ids.match(name):
        return next((alias for alias, i in apps.items() if i == name), name), name
    known = ", ".join(sorted(apps)) or "none configured"
    raise UsageError(f"Unknown {what} {_shown(name)}. Known: {known}.", usage)


def _parse_whop(args: list[str], config: BotConfig) -> Promote:
    usage = USAGE["whop"]
    if config.whop is None:
        raise UsageError("Whop is not configured on this bot (no [whop] in its config).")
    if len(args) not in (1, 2):
        raise UsageError(
            "`whop` takes a build id, and the app when more than one is set up.", usage
        )
    build_id = args[-1]
    if not _WHOP_BUILD.match(build_id):
        raise UsageError(
            f"{_shown(build_id)} is not a Whop build id (letters, digits and _ only).", usage
        )
    apps = config.whop.apps
    if len(args) == 2:
        app, app_id = _app(args[0], apps, WHOP_APP_ID, "Whop app", usage)
    elif len(apps) == 1:
        [(app, app_id)] = apps.items()
    else:
        known = ", ".join(sorted(apps)) or "none configured; give its app_… id"
        raise UsageError(f"Which Whop app is this build of? Apps: {known}.", usage)
    return Promote(WhopPromote(app=app, app_id=app_id, build_id=build_id))


def _asc_word(word: str, what: str, usage: str) -> str:
    if _ASC_VERSION.match(word) or _ASC_ID.match(word):
        return word
    raise UsageError(f"{_shown(word)} is not {what}.", usage)


def _parse_appstore(args: list[str], config: BotConfig) -> Promote:
    if config.appstore is None:
        raise UsageError(
            "App Store Connect is not configured on this bot (no [appstore] in its config)."
        )
    sub = args[0].lower() if args else ""
    key = f"appstore {sub}" if sub in ("expire", "encryption") else "appstore"
    usage = USAGE[key]
    rest = args[1:] if key != "appstore" else args
    expected = {"appstore": 3, "appstore expire": 2, "appstore encryption": 3}[key]
    if len(rest) != expected:
        forms = "\n".join(v for k, v in USAGE.items() if k.startswith("appstore"))
        raise UsageError(f"`{key}` takes {expected} words after it.", forms)
    app, app_id = _app(rest[0], config.appstore.apps, ASC_APP_ID, "App Store app", usage)
    if key == "appstore":
        version = _asc_word(rest[1], "a version string like 2.4.0 (or a version id)", usage)
        build = _asc_word(rest[2], "a build number like 153 (or a build id)", usage)
        return Promote(AppStoreAttach(app=app, app_id=app_id, version=version, build=build))
    build = _asc_word(rest[1], "a build number like 153 (or a build id)", usage)
    if key == "appstore expire":
        return Promote(AppStoreExpire(app=app, app_id=app_id, build=build))
    declared = rest[2].lower()
    if declared not in ("exempt", "non-exempt"):
        raise UsageError(f"Say `exempt` or `non-exempt`, not {_shown(rest[2])}.", usage)
    return Promote(
        AppStoreEncryption(
            app=app, app_id=app_id, build=build, uses_non_exempt_encryption=declared == "non-exempt"
        )
    )


def parse(text: str, config: BotConfig) -> Command:
    """Turn the text after `/promote` into a command, or raise `UsageError`."""
    words = _clean(text)
    if not words or words[0].lower() in ("help", "-h", "--help", "?"):
        return Help()
    verb, args = words[0].lower(), words[1:]
    if verb == "znyx":
        return _parse_znyx(args, config)
    if verb == "whop":
        return _parse_whop(args, config)
    if verb == "appstore":
        return _parse_appstore(args, config)
    if verb in ("status", "cancel"):
        if len(args) != 1:
            raise UsageError(f"`{verb}` takes one request number.", USAGE[verb])
        request_id = parse_request_id(args[0], USAGE[verb])
        return Status(request_id) if verb == "status" else Cancel(request_id)
    if verb == "history":
        if len(args) > 1 or (args and not _TARGET.match(args[0])):
            raise UsageError("`history` takes at most one target.", USAGE["history"])
        return History(args[0] if args else None)
    raise UsageError(f"Unknown command {_shown(words[0])}.", "\n".join(USAGE.values()))
