"""What every part of the core works with: the rules in force, the store, the providers, the
chat, the clock, and who this process is. One object, shared; `rules` is replaced (never
changed in place) when the config reloads, so work under way keeps the rules it started with."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from bot.core.ports import Chat, Provider, Store
from bot.core.rules import Rules

# A process executing a request holds a lease on it and renews it every third of its length;
# another process (or a restart) takes over only a lease that lapsed: the holder is gone.
DEFAULT_LEASE = timedelta(seconds=30)
# One execution (reads, the write, the read back) ends within this, whatever the provider does:
# past it the bot stops waiting and decides by reading the provider, as a recovery would.
DEFAULT_DEADLINE = timedelta(seconds=60)
# The longest the chat's client waits for one call (Slack's: bot/cli.py SLACK_TIMEOUT_SECONDS).
DEFAULT_CHAT_TIMEOUT = timedelta(seconds=10)


def utc_now() -> datetime:
    return datetime.now(UTC)


def process_name() -> str:
    """This process, in leases and logs: host, pid and a random part (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass
class Context:
    rules: Rules
    store: Store
    providers: Mapping[str, Provider]
    chat: Chat
    clock: Callable[[], datetime] = utc_now
    lease: timedelta = DEFAULT_LEASE
    deadline: timedelta = DEFAULT_DEADLINE
    owner: str = field(default_factory=process_name)
    chat_timeout: timedelta = DEFAULT_CHAT_TIMEOUT
