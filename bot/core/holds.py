"""What holds a target back now: locks people set (`/promote lock`, in the store, shared by
every process) and the config's running freeze windows. Setting and lifting locks is
bot/core/locking.py."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from fnmatch import fnmatchcase

from bot.core.context import Context
from bot.core.freezes import Freeze, fmt
from bot.core.markup import literal, user
from bot.core.model import Lock, Request


@dataclass(frozen=True)
class Hold:
    """Why a target can't be promoted now, for refusals and release messages."""

    kind: str  # "lock" or "freeze"
    text: str  # one line, in the core's small markup
    words: str  # the same line as plain words, for the audit log (escaped where it is shown)


def holds_on(
    target: str, locks: Iterable[Lock], freezes: Sequence[Freeze], now: datetime
) -> list[Hold]:
    """Every lock and running freeze that covers `target` at `now`. Pure."""
    found = []
    for lock in locks:
        if fnmatchcase(target, lock.pattern):
            head, since = f"🔒 `{lock.pattern}` is locked by ", f" since {fmt(lock.at)}: "
            found.append(
                Hold(
                    "lock",
                    head + user(lock.by) + since + literal(lock.reason),
                    head + lock.by + since + lock.reason,
                )
            )
    for freeze in freezes:
        window = freeze.window_at(now) if freeze.applies_to(target) else None
        if window is not None:
            until = f": frozen until {fmt(window.end, freeze)}"
            found.append(
                Hold("freeze", f"❄️ {literal(freeze.reason)}{until}", f"❄️ {freeze.reason}{until}")
            )
    return found


def holds_now(ctx: Context, target: str) -> list[Hold]:
    """The locks and running freezes on `target` now."""
    return holds_on(target, ctx.store.locks(), ctx.rules.freezes, ctx.clock())


HOLDS_SHOWN = 3  # holds a release message or a refusal lists; the rest are counted


def few(texts: Sequence[str], most: int = HOLDS_SHOWN) -> tuple[str, ...]:
    """The first `most` hold texts, and a line counting the rest: 45 locks on one target must
    not make a message too long for Slack (50 blocks at most). Pure."""
    if len(texts) <= most:
        return tuple(texts)
    rest = len(texts) - most
    return (*texts[:most], f"… and {rest} more (`/promote locks` lists them all)")


def summary(on_hold: Sequence[Hold]) -> str:
    """The holds in one line of plain words, for the audit log: the first few, and how many
    more."""
    return "; ".join(few([h.words for h in on_hold])) or "nothing holds it now"


def hold_texts(ctx: Context, request: Request) -> tuple[str, ...]:
    """What `request`'s release message shows of them (while it is open): the first few."""
    if not request.state.is_open:
        return ()
    return few([h.text for h in holds_now(ctx, request.action.target)])


def held_text(what: str, on_hold: list[Hold]) -> str:
    lines = [f"{what}:", *(f"• {text}" for text in few([h.text for h in on_hold]))]
    lines.append(
        "In an emergency, ask with `--emergency <why>` at the end: it needs one more approval."
    )
    return "\n".join(lines)


def unconfigured(ctx: Context, request: Request) -> str | None:
    """Why nothing of `request` may run now because the config has no section for its provider
    (removed by a reload; the provider's client lives on until a restart), or None."""
    name = request.action.provider
    if ctx.rules.provider(name) is not None:
        return None
    label = ctx.rules.unconfigured.get(name, name)
    return f"{label} is no longer configured on this bot (no [{name}] in its config)"
