"""Control characters in text from outside (what people type, what a provider says): C0 and C1
controls (NUL, ESC of ANSI sequences, DEL, …) and the invisible bidirectional controls (U+202E
RIGHT-TO-LEFT OVERRIDE and its kin), which can hide or reorder what a text says. Tabs and line
breaks are ordinary whitespace. Pure.

A command that holds one is refused (bot/core/commands.py), text shown in the markup gets `�`
for one (bot/core/markup.py), and a text log line shows each as an escape (bot/logs.py).
"""

from __future__ import annotations

import re
import unicodedata

CONTROLS = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]"
)
_BREAKS = re.compile("[\n\r\u2028\u2029]")  # line breaks, in what must stay one line
REPLACEMENT = "\ufffd"


def first_control(text: str) -> str | None:
    """The first control character in `text`, or None."""
    found = CONTROLS.search(text)
    return found.group() if found else None


def describe(char: str) -> str:
    """ "U+202E (RIGHT-TO-LEFT OVERRIDE)", "U+001B (an ASCII control character)"."""
    name = unicodedata.name(char, "")
    return f"U+{ord(char):04X} ({name or 'a control character'})"


def replaced(text: str) -> str:
    """`text` with each control character as `�`."""
    return CONTROLS.sub(REPLACEMENT, text)


def escaped(text: str) -> str:
    """`text` on one line, each control character and line break as a visible escape
    (`\\x1b`, `\\u202e`, `\\n`), so a log line can't be forged, recoloured or reordered."""

    def escape(match: re.Match[str]) -> str:
        return match.group().encode("unicode_escape").decode("ascii")

    return _BREAKS.sub(escape, CONTROLS.sub(escape, text))
