"""Logging: a level (LOG_LEVEL), text or JSON lines (LOG_FORMAT), and secrets redacted. A text
line shows control characters in its message as escapes (JSON escapes them itself).

Redaction is a `logging.Filter` on the one handler, so it sees every record of every library
(slack_bolt, aiohttp, httpx) before it is formatted: the configured secret values, `Bearer …`,
Slack tokens (`xoxb-`, `xoxp-`, `xoxa-`, `xapp-`), JWT-shaped strings and PEM private keys
become `[redacted]`, in the message, its arguments, extra fields and tracebacks alike.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from pydantic import SecretStr
from pydantic_settings import BaseSettings

from bot.core.controls import escaped
from bot.core.redact import uri_passwords

REDACTED = "[redacted]"
PATTERNS = (
    re.compile(r"(?i)\bBearer\s+[A-Za-z0-9._~+/=-]+"),
    re.compile(r"\bxox[bpae]-[A-Za-z0-9-]+"),
    re.compile(r"\bxapp-[A-Za-z0-9-]+"),
    re.compile(r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"),  # a JWT
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S),
)
MIN_SECRET = 6  # shorter configured values would redact ordinary words
# What a LogRecord has of its own; anything else on it came as `extra=`.
_RECORD_KEYS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
HANDLER_NAME = "promote-bot"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class Redactor(logging.Filter):
    """Replaces secrets in every record that passes; never drops one."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if len(s) >= MIN_SECRET}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        for pattern in PATTERNS:
            text = pattern.sub(REDACTED, text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep what there is, formatted plainly
            message = f"{record.msg} {record.args}"
        record.msg, record.args = self.redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        for key, value in list(vars(record).items()):
            if key not in _RECORD_KEYS and isinstance(value, str):
                setattr(record, key, self.redact(value))
        return True


class TextFormatter(logging.Formatter):
    """`TEXT_FORMAT`, one line per record: control characters and line breaks in the message
    (a reason someone typed, a provider's words) are shown as escapes (`\\x1b`, `\\u202e`,
    `\\n`), so no text can forge a log line, recolour a terminal or reorder what it shows."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escaped(record.message)
        return super().formatMessage(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the record's extra fields
    (request_id, event, target, actor, state, …) and the traceback if any."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_KEYS and key not in entry:
                entry[key] = (
                    value if isinstance(value, str | int | float | bool | None) else str(value)
                )
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, ensure_ascii=False)


def secret_values(
    models: Iterable[type[BaseSettings]], environ: Mapping[str, str] | None = None
) -> list[str]:
    """The values of every `SecretStr` setting of `models` found in the environment (even one
    that fails validation, so a wrong token is not logged either)."""
    environ = os.environ if environ is None else environ
    upper = {k.upper(): v for k, v in environ.items()}
    found = uri_passwords(upper.get("PROMOTE_BOT_DB", ""))  # a PostgreSQL URI's password
    for model in models:
        for name, info in model.model_fields.items():
            if "SecretStr" in repr(info.annotation) or info.annotation is SecretStr:
                value = upper.get(name.upper())
                if value:
                    found.append(value)
    return found


def state_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Where the bot keeps what a person's shell leaves behind: `$XDG_STATE_HOME/promote-bot`,
    else `~/.local/state/promote-bot`."""
    environ = os.environ if environ is None else environ
    state = environ.get("XDG_STATE_HOME") or ""
    base = Path(state) if os.path.isabs(state) else Path.home() / ".local" / "state"
    return base / "promote-bot"


def shell_log(environ: Mapping[str, str] | None = None) -> tuple[IO[str] | None, Path]:
    """The shell's log file, opened to append (owner only), and its path: the shell's
    terminal shows the chat, and a log line there would read as part of it. None when it
    can't be opened (the log then goes to stderr)."""
    path = state_dir(environ) / "shell.log"
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        return os.fdopen(fd, "a", encoding="utf-8", buffering=1), path
    except OSError:
        return None, path


def configure(
    level: str | int = logging.INFO,
    fmt: str = "text",
    secrets: Iterable[str] = (),
    stream: IO[str] | None = None,
) -> logging.Handler:
    """Give the root logger one handler that redacts and formats as `fmt` (replacing one an
    earlier call installed; handlers of others, like pytest's, are left alone)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(Redactor(secrets))
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.set_name(HANDLER_NAME)
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler
