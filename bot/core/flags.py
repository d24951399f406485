"""Reading what people type beyond the grammar: a misspelt word's likely meaning, and the
`--emergency <why…>` flag wherever it is unambiguous, with its dashes as phones type them.
Pure."""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from bot.core.errors import UsageError
from bot.core.model import Action, Query
from bot.core.timing import AT

if TYPE_CHECKING:
    from bot.core.rules import Rules

EMERGENCY = "--emergency"
# A flag as phones and macOS type it: `—emergency` (an em dash for two hyphens), `–emergency`.
_DASHED = re.compile(r"^[-\u2010-\u2015\u2212]{1,2}([A-Za-z]+)$")


def closest(word: str, options: Iterable[str]) -> str | None:
    """The one of `options` that `word` most likely misspells (`wohp` → `whop`), or None:
    two letters swapped (`iso` → `ios`, too short for a ratio to tell), else difflib's
    closest match."""
    word, options = word.lower(), list(options)
    swapped = next((o for o in options if _swapped(word, o.lower())), None)
    if swapped is not None:
        return swapped
    found = difflib.get_close_matches(word, options, n=1, cutoff=0.7)
    return found[0] if found else None


def _swapped(word: str, option: str) -> bool:
    """Is `word` `option` with two neighbouring letters swapped?"""
    if len(word) != len(option) or word == option:
        return False
    at = [i for i, (a, b) in enumerate(zip(word, option, strict=True)) if a != b]
    if len(at) != 2 or at[1] != at[0] + 1:
        return False
    i, j = at
    return word[i] == option[j] and word[j] == option[i]


def did_you_mean(word: str, options: Iterable[str], said: str = "") -> str:
    """ " Did you mean `whop`?" when `word` looks like a misspelling of one of `options`
    (shown as `said` + the option), else ""."""
    guess = closest(word, options)
    return f" Did you mean `{said}{guess}`?" if guess else ""


def flag(word: str) -> str:
    """A word as a flag: `—emergency`, `–emergency` and `-emergency` are `--emergency` (and
    so for `--at`); any other word is itself."""
    match = _DASHED.match(word)
    named = f"--{match.group(1).lower()}" if match else None
    if named in (EMERGENCY, AT):
        return named
    return word


_LAST = f"Put `{EMERGENCY}` and why at the end, e.g. `… {EMERGENCY} incident 4521 hotfix`."


def flag_first(words: list[str], rules: Rules) -> tuple[Action | Query, str]:
    """`--emergency <why…> <provider> <words…>`: the provider's words parsed, and the reason
    as typed, when exactly one way of reading a provider's name among the words after the
    flag (and its words to the end) parses."""
    found: dict[Action | Query, int] = {}
    for at in range(2, len(words)):  # at least one word of reason before the provider
        provider = rules.provider(words[at].lower())
        if provider is None:
            continue
        try:
            found.setdefault(provider.parse(words[at + 1 :]), at)
        except UsageError:
            continue
    if len(found) != 1:
        raise UsageError(f"`{EMERGENCY}` comes after the command it is for. {_LAST}")
    [(parsed, at)] = found.items()
    return parsed, " ".join(words[1:at])


def split_emergency(
    args: list[str], parse_words: Callable[[list[str]], Action | Query]
) -> tuple[Action | Query, str | None]:
    """The provider's words parsed, and the reason given after `--emergency`, as typed (None
    without the flag). The flag belongs at the end; anywhere else it is taken where that is
    unambiguous: the reason is the words after the flag that are not the end of the command
    (one way only of splitting them parses, or every way gives the same action)."""
    words = [flag(word) for word in args]
    flags = [i for i, word in enumerate(words) if word == EMERGENCY]
    if not flags:
        return parse_words(args), None
    if len(flags) > 1:
        raise UsageError(f"`{EMERGENCY}` is given more than once. {_LAST}")
    at = flags[0]
    before, after = args[:at], args[at + 1 :]
    if not after:
        raise UsageError(f"`{EMERGENCY}` must be followed by why. {_LAST}")
    splits: list[tuple[Action | Query, list[str]]] = []
    first: UsageError | None = None
    for tail in range(len(after)):  # how many of the last words are the command's
        try:
            parsed = parse_words(before + after[len(after) - tail :])
        except UsageError as exc:
            first = first or exc
        else:
            splits.append((parsed, after[: len(after) - tail]))
    if not splits:
        assert first is not None
        raise first
    if len({parsed for parsed, _ in splits}) > 1:
        raise UsageError(f"Which words after `{EMERGENCY}` are the reason? {_LAST}")
    parsed, reason = splits[-1]  # the same action every way: the shortest reason
    return parsed, " ".join(reason)
