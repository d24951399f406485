"""Parsing `/promote …` text into a command. Pure.

The core's own verbs (help, status, history, approve, reject, cancel, rollback, notify, …) are
parsed here; a provider's verb is
handed to that provider's grammar (`ProviderRules.parse`), with the helpers below.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.core.controls import describe, first_control
from bot.core.errors import UsageError
from bot.core.flags import EMERGENCY, closest, did_you_mean, flag, flag_first, split_emergency
from bot.core.markup import literal
from bot.core.model import Action, Query
from bot.core.timing import AT, AT_FORMS, At, AtError, at_words, parse_at

__all__ = ["EMERGENCY", "UsageError", "closest", "did_you_mean", "parse"]

if TYPE_CHECKING:
    from bot.core.rules import Rules

USAGE: dict[str, str] = {
    "help": "/promote help",
    "status": "/promote status <request>   e.g. /promote status 12",
    "history": "/promote history [<target-pattern>]",  # or a provider, or a request number
    "approve": "/promote approve <request> [comment…]   e.g. /promote approve 12 tests are green",
    "reject": "/promote reject <request> <reason…>   e.g. /promote reject 12 wait for the fix",
    "cancel": "/promote cancel <request> [reason…]",
    "rollback": "/promote rollback <request>   e.g. /promote rollback 12",
    "pending": "/promote pending",
    "locks": "/promote locks",
    "lock": "/promote lock <target-pattern> <reason…>",
    "unlock": "/promote unlock <target-pattern>",
    "notify": "/promote notify on|off",
    "stats": "/promote stats [<target-pattern>] [--days N]   e.g. /promote stats znyx:*:prod",
}

WORD = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_REQUEST_ID = re.compile(r"^#?(\d{1,12})$")
_PATTERN = re.compile(r"^([a-z][a-z0-9_-]{0,31}|\*)(:[A-Za-z0-9_.*?-]{1,64}){0,2}$")
REASON_LIMIT = 300
DAYS = "--days"
STATS_DAYS = (30, 366)  # the default, and the most `--days` may say


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
class Show:
    """A read-only look at what a provider has (`whop builds`, `znyx bundles …`): answered
    only to the caller, who needs the provider's scope."""

    query: Query


@dataclass(frozen=True)
class History:
    """The newest events: of every target (both None), of the targets a pattern matches
    (`target`, fnmatch: `znyx:*:prod`, or an exact target), or of one request."""

    target: str | None = None
    request_id: int | None = None


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
class Stats:
    """What the releases add up to over the last `days` days, per target (matching `pattern`)."""

    pattern: str | None = None
    days: int = STATS_DAYS[0]


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
    | Show
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
    | Stats
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


def unknown(what: str, word: str, known: Iterable[str], usage: str | None) -> UsageError:
    """ "Unknown Whop app `storfront`. Did you mean `storefront`? Known: backoffice, …"."""
    names = sorted(known)
    listed = ", ".join(names) or "none configured"
    return UsageError(
        f"Unknown {what} {shown(word)}.{did_you_mean(word, names)} Known: {listed}.", usage
    )


def resolve_alias(
    name: str, aliases: dict[str, str], ids: re.Pattern[str], what: str, usage: str
) -> tuple[str, str]:
    """An alias from the config, or an id (shown by its alias when it has one)."""
    if name in aliases:
        return name, aliases[name]
    if ids.match(name):
        return next((alias for alias, i in aliases.items() if i == name), name), name
    raise unknown(what, name, aliases, usage)


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
            name = example.split(":", 1)[0]
            line += (
                f"   e.g. /promote history {example}, /promote history {name}:*, "
                f"/promote history {name}, /promote history 12"
            )
    return line


def provider_usages(name: str, rules: Rules) -> str:
    """Every form of one configured provider's command."""
    return "\n".join(f.usage for f in rules.providers[name].forms)


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
    if flag(words[0]) == EMERGENCY:  # the flag first: `--emergency <why…> whop …`
        words, at = split_at(words)
        return _provider_command(*flag_first(words, rules), at)
    verb, args = words[0].lower(), words[1:]
    provider = rules.provider(verb)
    if provider is not None:
        args, at = split_at(args)  # anywhere, even after `--emergency <why>`
        return _provider_command(*split_emergency(args, provider.parse), at)
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
        return _history(args, rules)
    if verb in ("pending", "locks"):
        if args:
            raise UsageError(f"`{verb}` takes nothing more.", USAGE[verb])
        return Pending() if verb == "pending" else Locks()
    if verb in ("lock", "unlock"):
        return _lock(verb, args)
    if verb == "stats":
        return _stats(args)
    raise _unknown_command(words[0], rules)


def _provider_command(
    parsed: Action | Query, emergency: str | None, at: At | None = None
) -> Promote | Show:
    if isinstance(parsed, Query):
        if emergency is not None or at is not None:
            said = EMERGENCY if emergency is not None else AT
            raise UsageError(f"`{said}` is for requests; looking needs none.")
        return Show(parsed)
    return Promote(parsed, None if emergency is None else _reason(emergency), at)


def _unknown_command(word: str, rules: Rules) -> UsageError:
    """An unknown first word: the command it most likely misspells, with only its usage;
    else every form."""
    guess = closest(word, [*rules.providers, *rules.unconfigured, *USAGE])
    said = f"Unknown command {shown(word)}."
    if guess is None:
        return UsageError(said, all_usages(rules))
    said += f" Did you mean `{guess}`?"
    if guess in rules.unconfigured:
        return UsageError(f"{said} {rules.unconfigured[guess]} is not configured on this bot.")
    if guess in rules.providers:
        return UsageError(said, provider_usages(guess, rules))
    return UsageError(said, usage(guess, rules))


def _history(args: list[str], rules: Rules) -> History:
    """`history`, `history <target or pattern>`, `history <provider>`, `history <request>`."""
    form = usage("history", rules)
    if not args:
        return History()
    if len(args) > 1:
        raise UsageError(
            "`history` takes at most one target, pattern, provider or request number.", form
        )
    word = args[0]
    number = _REQUEST_ID.match(word)
    if number:
        return History(request_id=int(number.group(1)))
    if word.lower() in rules.providers:
        return History(target=f"{word.lower()}:*")
    if word.lower() in rules.unconfigured:
        label = rules.unconfigured[word.lower()]
        raise UsageError(f"{label} is not configured on this bot, so it has no history here.")
    if not _PATTERN.match(word) or (":" not in word and word != "*"):
        targets = [t for p in rules.providers.values() for t in p.targets()]
        named = [t for t in targets if word in t.split(":")]  # `guardrails`: its targets
        if named:
            kinds = {t.split(":")[0] for t in named}
            guess = f"{kinds.pop()}:{word}:*" if len(kinds) == 1 else f"*:{word}*"
            mean = f" Did you mean `{named[0] if len(named) == 1 else guess}`?"
        else:
            mean = did_you_mean(word, [*rules.providers, *targets])
        raise UsageError(
            f"{shown(word)} is not a target, a pattern like `<provider>:*`, a provider or a "
            f"request number.{mean}",
            form,
        )
    return History(target=None if word == "*" else word)


def split_at(args: list[str]) -> tuple[list[str], At | None]:
    """The words without `--at <when>`, and the time it names (None without the flag)."""
    flags = [i for i, word in enumerate(args) if flag(word) == AT]
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


def is_target_pattern(text: str) -> bool:
    """A target pattern as locks, policies and `stats` take them: `znyx:*:prod`, `whop:*`."""
    return bool(_PATTERN.match(text))


def _stats(args: list[str]) -> Stats:
    """`stats [<target-pattern>] [--days N]`, in either order (`--days=N` too)."""
    days, pattern, rest = STATS_DAYS[0], None, list(args)
    while rest:
        word = rest.pop(0)
        if word.lower() == DAYS or word.lower().startswith(DAYS + "="):
            given = word.split("=", 1)[1] if "=" in word else (rest.pop(0) if rest else "")
            if not given.isdigit() or not 1 <= int(given) <= STATS_DAYS[1]:
                raise UsageError(
                    f"`{DAYS}` takes a number of days from 1 to {STATS_DAYS[1]}.", USAGE["stats"]
                )
            days = int(given)
        elif pattern is None and _PATTERN.match(word):
            pattern = word
        else:
            raise UsageError(
                f"{shown(word)} is not a target pattern like `<provider>:*:prod`.",
                USAGE["stats"],
            )
    return Stats(pattern, days)


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
