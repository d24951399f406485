"""Target patterns (`znyx:*:prod`, `appstore:*`) as both stores match them in the audit log.

A pattern's literal start bounds the range of the target index it can match in; within that
range the stores walk the distinct targets (one index seek each, never the entries between
them), and the newest `limit` entries of the targets that match are among the `limit` targets
whose newest entries are newest. So `history <pattern>` costs what the number of targets
costs, however long the history of each has grown.
"""

from __future__ import annotations

WILDCARDS = "*?"
_NO_SUCCESSOR = (0xD7FF, 0x10FFFF)  # its next code point can't be written in UTF-8


def is_pattern(target: str | None) -> bool:
    return bool(target) and any(c in WILDCARDS for c in str(target))


def prefix_range(pattern: str) -> tuple[str, str | None]:
    """The range of targets (in code point order, as SQLite's BINARY collation and
    PostgreSQL's text_pattern_ops compare them) that `pattern` can match: from its literal
    start (inclusive) to the first string after every string with that start (exclusive;
    None: no end)."""
    cut = min((i for i, c in enumerate(pattern) if c in WILDCARDS), default=len(pattern))
    start = pattern[:cut]
    if not start or ord(start[-1]) in _NO_SUCCESSOR:
        return start, None
    return start, start[:-1] + chr(ord(start[-1]) + 1)
