"""A PostgreSQL that stops answering must not stall the bot.

A frozen server, or a network that drops packets without a word, leaves a statement waiting
for an answer that never comes: libpq waits on its socket for as long as TCP does, and the
server's own `statement_timeout` can't fire on a server that is not running. So each statement
is bounded on this side too:

- `Watchdog` gives the statement in flight a deadline (a little longer than the server's
  `statement_timeout`, so a slow but living server always answers first, with its own error)
  and, past it, shuts the connection's socket down: libpq's wait ends at once with an error,
  and the connection is dropped. One thread per store looks at the deadline a few times a
  second; starting and ending a statement costs a lock, never a thread switch.
- `Answering` remembers that the database stopped answering. Until it answers again every call
  fails at once, without waiting on the database (the event loop and the acks see an error in
  microseconds, not seconds), while a thread of its own asks the database every second whether
  it is back.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

log = logging.getLogger(__name__)

LOOK_EVERY = 0.1  # how often the watchdog looks at the deadline of the statement in flight
PROBE_EVERY = 1.0  # how often a database that stopped answering is asked again


class Cut(Exception):
    """The statement got no answer by its deadline; its connection was shut down."""


@dataclass(frozen=True)
class _Armed:
    token: int
    deadline: float
    fd: int


class Watchdog:
    """Cuts off a statement that got no answer within `seconds` (see the module's words)."""

    def __init__(self, seconds: float, *, look_every: float = LOOK_EVERY) -> None:
        self.seconds = seconds
        self.look_every = look_every
        self._lock = threading.Lock()
        self._armed: _Armed | None = None
        self._cut: int | None = None
        self._tokens = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @contextlib.contextmanager
    def watching(self, fd: int) -> Iterator[None]:
        """Around one statement (or one short transaction) on the connection whose socket is
        `fd`; raises `Cut` if the watchdog had to cut it off."""
        with self._lock:
            self._tokens += 1
            token = self._tokens
            self._armed = _Armed(token, time.monotonic() + self.seconds, fd)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._watch, name="promote-bot db watchdog", daemon=True
                )
                self._thread.start()
        try:
            yield
        except Exception:
            if self._disarm(token):
                raise Cut(f"no answer within {self.seconds:g} s") from None
            raise
        if self._disarm(token):  # cut just as it answered: the connection is gone anyway
            raise Cut(f"no answer within {self.seconds:g} s")

    def _disarm(self, token: int) -> bool:
        """End the watch of `token`; True if it was cut off."""
        with self._lock:
            self._armed = None
            cut = self._cut == token
            if cut:
                self._cut = None
        return cut

    def _watch(self) -> None:
        while not self._stop.wait(self.look_every):
            with self._lock:
                armed = self._armed
                if armed is None or time.monotonic() < armed.deadline:
                    continue
                self._cut, self._armed = armed.token, None
                _shut_down(armed.fd)

    def close(self) -> None:
        self._stop.set()


def _shut_down(fd: int) -> None:
    """Shut the socket `fd` down (both ways) without closing it: whoever waits on it wakes up
    to an end of file, and libpq closes it as it gives the connection up."""
    try:
        dup = socket.socket(fileno=os.dup(fd))
    except OSError:
        return  # closed meanwhile
    try:
        dup.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        dup.close()


class Answering:
    """Whether the database answers; while it does not, calls fail at once and a thread asks
    it again every `probe_every` seconds with `probe` (True once it answered)."""

    def __init__(self, probe: Callable[[], bool], *, probe_every: float = PROBE_EVERY) -> None:
        self.probe = probe
        self.probe_every = probe_every
        self._since: float | None = None  # time.time() it stopped answering
        self._lock = threading.Lock()
        self._stop = threading.Event()

    @property
    def down(self) -> str | None:
        """Why calls are refused now ("not answering (for 3 s)"), or None."""
        since = self._since
        if since is None:
            return None
        return f"not answering (for {max(0, round(time.time() - since))} s)"

    def stopped(self, why: str) -> None:
        """The database did not answer in time: refuse calls until it does again."""
        with self._lock:
            if self._since is not None or self._stop.is_set():
                return
            self._since = time.time()
        log.error("the database stopped answering (%s); calls fail at once until it answers", why)
        threading.Thread(target=self._ask_again, name="promote-bot db probe", daemon=True).start()

    def _ask_again(self) -> None:
        while not self._stop.wait(self.probe_every):
            try:
                back = self.probe()
            except Exception:
                back = False
            if back:
                with self._lock:
                    since, self._since = self._since, None
                took = time.time() - (since or time.time())
                log.warning("the database answers again, after %.0f s", took)
                return

    def close(self) -> None:
        self._stop.set()
