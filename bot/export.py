"""The audit log out of the bot, for auditors and other tools: `promote-bot audit` writes it as
JSON lines or CSV, one entry at a time as the database streams it, and reads back exactly what
it wrote (`read`), so an export round-trips.

Secrets never leave: every text field goes through the same redaction as what providers say
(credential-shaped strings, and the values of the bot's secret settings) on its way out. In CSV,
a field that a spreadsheet would take for a formula (it starts with `=`, `+`, `-`, `@`, a tab
or a carriage return) or that starts with `'` gets a leading `'`, which reading drops again.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, TextIO

from bot.core.model import AuditEntry
from bot.core.redact import redactor

FORMATS = ("jsonl", "csv")
FIELDS = ("id", "at", "request_id", "actor", "event", "target", "detail")
_FORMULA = ("=", "+", "-", "@", "\t", "\r", "'")


def when(text: str, *, end: bool = False) -> datetime:
    """A date (`2026-11-01`: its start, or with `end` the start of the next day, so that
    `--until 2026-11-30` includes that day) or a date and time (UTC unless it says otherwise:
    `2026-11-01T10:00`, `2026-11-01T10:00:00+02:00`, `…Z`); ValueError if it is neither."""
    text = text.strip()
    try:
        day = date.fromisoformat(text)
    except ValueError:
        pass
    else:
        if len(text) == 10:  # a bare date, not a week date or an ordinal
            start = datetime.combine(day, time(0), UTC)
            return start + timedelta(days=1) if end else start
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is not a date like 2026-11-01 or 2026-11-01T10:00Z") from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def row(entry: AuditEntry, secrets: Iterable[str] = ()) -> dict[str, Any]:
    """One entry as the export shows it, secrets cut out."""
    return _row(entry, redactor(secrets))


def _row(entry: AuditEntry, clean: Callable[[str], str]) -> dict[str, Any]:
    return {
        "id": entry.id,
        "at": entry.at.astimezone(UTC).isoformat(),
        "request_id": entry.request_id,
        "actor": clean(entry.actor),
        "event": clean(entry.event),
        "target": None if entry.target is None else clean(entry.target),
        "detail": clean(entry.detail),
    }


def write(entries: Iterable[AuditEntry], out: TextIO, fmt: str, secrets: Iterable[str] = ()) -> int:
    """Write `entries` to `out` as `fmt` (jsonl or csv), one at a time; how many."""
    clean = redactor(secrets)  # made once: a million entries may follow
    count = 0
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(FIELDS)
        for entry in entries:
            writer.writerow([_cell(v) for v in _row(entry, clean).values()])
            count += 1
        return count
    encode = json.JSONEncoder(ensure_ascii=False).encode
    for entry in entries:
        out.write(encode(_row(entry, clean)) + "\n")
        count += 1
    return count


def _cell(value: object) -> str:
    if value is None:
        return ""
    text = str(value)
    return "'" + text if text.startswith(_FORMULA) else text


def _uncell(text: str) -> str:
    return text[1:] if text.startswith("'") else text


def read(lines: Iterable[str] | TextIO, fmt: str) -> Iterator[AuditEntry]:
    """The entries an export wrote, back."""
    if fmt == "csv":
        for record in csv.DictReader(lines):
            yield _entry(
                {
                    "id": int(record["id"]) if record["id"] else None,
                    "at": record["at"],
                    "request_id": int(record["request_id"]) if record["request_id"] else None,
                    "actor": _uncell(record["actor"]),
                    "event": _uncell(record["event"]),
                    "target": _uncell(record["target"]) if record["target"] else None,
                    "detail": _uncell(record["detail"]),
                }
            )
        return
    for line in lines:
        if line.strip():
            yield _entry(json.loads(line))


def _entry(data: dict[str, Any]) -> AuditEntry:
    return AuditEntry(**{**data, "at": datetime.fromisoformat(data["at"])})
