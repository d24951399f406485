"""Parsing `/promote …` text into a command. Pure.

The core's own verbs (help, status, history, approve, reject, cancel, rollback, notify, …) are
parsed here; a provider's verb is
handed to that provider's grammar (`ProviderRules.parse`), with the helpers below.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.core.controls import describe, first_control
from bot.core.markup import literal
from bot.core.model import Action
from bot.core.timing import AT, AT_FORMS, At, AtError, at_words, parse_at

if TYPE_CHECKING:
    from bot.core.rules import Rules

USAGE: dict[str, str] = {
    "help": "/promote help",
    "status": "/promote status <request>   e.g. /promote status 12",
    "history": "/promote history [<target>]",
    "approve": "/promote approve <request> [comment…]   e.g. /promote approve 12 tests are green",
    "reject": "/promote reject <request> <reason…>   e.g. /promote reject 12 wait for the fix",
    "cancel": "/promote cancel <request> [reason…]",
    "rollback": "/promote rollback <request>   e.g. /promote rollback 12",
    "pending": "/promote pending",
    "locks": "/promote locks",
    "lock": "/promote lock <target-pattern> <reason…>",
    "unlock": "/promote unlock <target-pattern>",
    "notify": "/promote notify on|off",
}
EMERGENCY = "--emergency"

WORD = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_TARGET = re.compile(r"^[a-z][a-z0-9_-]{0,31}(:[A-Za-z0-9_.-]{1,64}){1,2}$")
_REQUEST_ID = re.compile(r"^#?(\d{1,12})$")
_PATTERN = re.compile(r"^([a-z][a-z0-9_-]{0,31}|\*)(:[A-Za-z0-9_.*?-]{1,64}){0,2}$")
REASON_LIMIT = 300


class UsageError(Exception):
    """The input was wrong; `message` says what, `usage` shows the right form."""

    def __init__(self, message: str, usage: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.usage = usage


@dataclass(frozen=True)
class Bare:
    """A command of one word: `help`, `pending`, `locks`."""


@dataclass(frozen=True)
class OnRequest:
    """A command about one request by its number: `status 12`, `cancel 12`, `rollback 12`."""

    request_id: int


class Help(Bare):
    """What the caller may do."""


@dataclass(frozen=True)
class Promote:
    action: Action
    emergency: str | None = None  # break-glass: passes locks and freezes, needs one more approval
    at: At | None = None  # `--at`: run it then, in the requester's time zone


class Status(OnRequest):
    """A request's state, approvals and timeline."""


@dataclass(frozen=True)
class History:
    target: str | None = None


@dataclass(frozen=True)
class Approve:
    """Approve an open request, optionally saying something (`comment`)."""

    request_id: int
    comment: str | None = None


@dataclass(frozen=True)
class Reject:
    """Reject an open request, saying why."""

    request_id: int
    reason: str


@dataclass(frozen=True)
class Cancel:
    """Cancel an open request, optionally saying why."""

    request_id: int
    reason: str | None = None


@dataclass(frozen=True)
class Notify:
    """Whether the caller gets direct messages (`on` None: say which)."""

    on: bool | None = None


class Pending(Bare):
    """The open requests the caller may act on."""


class Rollback(OnRequest):
    """Undo a succeeded promotion (`request_id`) with a new request."""


@dataclass(frozen=True)
class Lock:
    pattern: str
    reason: str


class Locks(Bare):
    """The locks and freezes now."""


@dataclass(frozen=True)
class Unlock:
    pattern: str


Command = (
    Help
    | Promote
    | Status
    | History
    | Approve
    | Reject
    | Cancel
    | Rollback
    | Pending
    | Locks
    | Lock
    | Unlock
    | Notify
)


def _clean(text: str) -> list[str]:
    return text.replace("\u00a0", " ").split()


def shown(word: str) -> str:
    """A user's word, safe to echo back: short, and never able to ping or format."""
    word = word[:40] + ("…" if len(word) > 40 else "")
    return "`" + literal(word.replace("`", "'")) + "`"


def parse_request_id(word: str, usage: str) -> int:
    match = _REQUEST_ID.match(word)
    if not match:
        raise UsageError(f"{shown(word)} is not a request number.", usage)
    return int(match.group(1))


def resolve_alias(
    name: str, aliases: dict[str, str], ids: re.Pattern[str], what: str, usage: str
) -> tuple[str, str]:
    """An alias from the config, or an id (shown by its alias when it has one)."""
    if name in aliases:
        return name, aliases[name]
    if ids.match(name):
        return next((alias for alias, i in aliases.items() if i == name), name), name
    known = ", ".join(sorted(aliases)) or "none configured"
    raise UsageError(f"Unknown {what} {shown(name)}. Known: {known}.", usage)


def usage(key: str, rules: Rules) -> str:
    """The usage line of one of the core's verbs; `history` with a target this bot has."""
    line = USAGE[key]
    if key == "lock":
        example = next((t for p in rules.providers.values() for t in p.targets()[-1:]), None)
        if example:
            line += f"   e.g. /promote lock {example} incident 4521"
    if key == "history":
        example = next((t for p in rules.providers.values() for t in p.targets()[-1:]), None)
        if example:
            line += f"   e.g. /promote history {example}"
    return line


def all_usages(rules: Rules) -> str:
    """Every form of the command, the providers' first."""
    forms = [f.usage for p in rules.providers.values() for f in p.forms]
    return "\n".join([*forms, *(usage(key, rules) for key in USAGE)])


def parse(text: str, rules: Rules) -> Command:
    """Turn the text after `/promote` into a command, or raise `UsageError`."""
    control = first_control(text)
    if control is not None:  # the input boundary of every transport: nothing stores it
        raise UsageError(
            f"Your command holds a control character, {describe(control)}, which can hide "
            "or reorder what a text says: type it again without it."
        )
    words = _clean(text)
    if not words or words[0].lower() in ("help", "-h", "--help", "?"):
        return Help()
    verb, args = words[0].lower(), words[1:]
    provider = rules.provider(verb)
    if provider is not None:
        args, at = split_at(args)  # anywhere, even after `--emergency <why>`
        args, emergency = split_emergency(args)
        return Promote(provider.parse(args), emergency, at)
    if verb in rules.unconfigured:
        label = rules.unconfigured[verb]
        raise UsageError(f"{label} is not configured on this bot (no [{verb}] in its config).")
    if verb in ("status", "rollback"):
        if len(args) != 1:
            raise UsageError(f"`{verb}` takes one request number.", USAGE[verb])
        request_id = parse_request_id(args[0], USAGE[verb])
        return {"status": Status, "rollback": Rollback}[verb](request_id)
    if verb in ("approve", "reject", "cancel"):
        return _decision(verb, args)
    if verb == "notify":
        if len(args) > 1 or (args and args[0].lower() not in ("on", "off")):
            raise UsageError("`notify` takes `on` or `off`.", USAGE["notify"])
        return Notify(args[0].lower() == "on" if args else None)
    if verb == "history":
        if len(args) > 1 or (args and not _TARGET.match(args[0])):
            raise UsageError("`history` takes at most one target.", usage("history", rules))
        return History(args[0] if args else None)
    if verb in ("pending", "locks"):
        if args:
            raise UsageError(f"`{verb}` takes nothing more.", USAGE[verb])
        return Pending() if verb == "pending" else Locks()
    if verb in ("lock", "unlock"):
        return _lock(verb, args)
    raise UsageError(f"Unknown command {shown(words[0])}.", all_usages(rules))


def split_emergency(args: list[str]) -> tuple[list[str], str | None]:
    """The words before `--emergency`, and the reason after it (None without the flag)."""
    flags = [i for i, word in enumerate(args) if word.lower() == EMERGENCY]
    if not flags:
        return args, None
    at = flags[0]
    reason = " ".join(args[at + 1 :])
    if not reason or len(flags) > 1:
        raise UsageError(
            f"`{EMERGENCY}` comes last, followed by why, e.g. `{EMERGENCY} incident 4521 hotfix`."
        )
    return args[:at], _reason(reason)


def split_at(args: list[str]) -> tuple[list[str], At | None]:
    """The words without `--at <when>`, and the time it names (None without the flag)."""
    flags = [i for i, word in enumerate(args) if word.lower() == AT]
    if not flags:
        return args, None
    if len(flags) > 1:
        raise UsageError(f"`{AT}` comes once: {AT_FORMS}.")
    at = flags[0]
    taken = at_words(args, at)
    try:
        when = parse_at(args[at + 1 : at + 1 + taken])
    except AtError as exc:
        raise UsageError(str(exc)) from None
    return args[:at] + args[at + 1 + taken :], when


def _reason(text: str) -> str:
    """A reason people typed, as typed (it is escaped wherever it is shown: markup.literal),
    and not too long."""
    return text[:REASON_LIMIT] + ("…" if len(text) > REASON_LIMIT else "")


def _decision(verb: str, args: list[str]) -> Approve | Reject | Cancel:
    """`approve <N> [comment…]`, `reject <N> <reason…>`, `cancel <N> [reason…]`: the words
    after the number are what the person says, kept as typed (the core makes them safe)."""
    if not args:
        raise UsageError(f"`{verb}` takes a request number.", USAGE[verb])
    request_id = parse_request_id(args[0], USAGE[verb])
    said = " ".join(args[1:]) or None
    if verb == "approve":
        return Approve(request_id, said)
    if verb == "cancel":
        return Cancel(request_id, said)
    if said is None:
        raise UsageError(
            f"`reject` needs a reason after the number: the requester is told it "
            f"(up to {REASON_LIMIT} characters).",
            USAGE["reject"],
        )
    return Reject(request_id, said)


def said_text(text: str | None) -> str | None:
    """A reason or comment a person typed (a command, a form): on one line, cut at REASON_LIMIT
    characters, kept as typed otherwise (it is escaped wherever it is shown: markup.literal);
    None when nothing is left."""
    if text is None:
        return None
    words = " ".join(text.split())
    return _reason(words) if words else None


def _lock(verb: str, args: list[str]) -> Lock | Unlock:
    if not args or (verb == "unlock" and len(args) != 1):
        what = "a target pattern and why" if verb == "lock" else "one target pattern"
        raise UsageError(f"`{verb}` takes {what}.", USAGE[verb])
    if not _PATTERN.match(args[0]):
        raise UsageError(
            f"{shown(args[0])} is not a target pattern like `<provider>:*:prod`.",
            USAGE[verb],
        )
    if verb == "unlock":
        return Unlock(args[0])
    if len(args) < 2:
        raise UsageError("`lock` needs a reason after the pattern.", USAGE["lock"])
    return Lock(args[0], _reason(" ".join(args[1:])))
