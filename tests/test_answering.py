"""The client-side bounds of bot/store/answering.py on real sockets: a read that gets no answer
is cut off at its deadline, one answered in time is left alone, and a database that stopped
answering is refused at once until a probe finds it back. (The whole of it against a frozen
PostgreSQL: tests/test_frozen_postgres.py.)"""

from __future__ import annotations

import socket
import threading
import time

import pytest

from bot.store.answering import Answering, Cut, Watchdog


def test_a_read_with_no_answer_is_cut_off_at_its_deadline() -> None:
    ours, theirs = socket.socketpair()
    watchdog = Watchdog(0.3, look_every=0.02)
    try:
        started = time.monotonic()
        with pytest.raises(Cut, match=r"no answer within 0\.3 s"), watchdog.watching(ours.fileno()):
            assert ours.recv(1) == b""  # woken by the shutdown: an end of file
            raise ConnectionError("server closed the connection")  # as libpq reports it
        assert 0.3 <= time.monotonic() - started < 1.0
    finally:
        watchdog.close()
        ours.close()
        theirs.close()


def test_an_answer_in_time_is_left_alone_and_the_watch_is_reusable() -> None:
    ours, theirs = socket.socketpair()
    watchdog = Watchdog(0.3, look_every=0.02)
    try:
        for _ in range(3):
            threading.Timer(0.05, theirs.send, [b"x"]).start()
            with watchdog.watching(ours.fileno()):
                assert ours.recv(1) == b"x"
        time.sleep(0.4)  # past the deadline, with nothing in flight: nothing is cut
        theirs.send(b"y")
        assert ours.recv(1) == b"y"
    finally:
        watchdog.close()
        ours.close()
        theirs.close()


def test_a_database_that_stopped_answering_is_refused_until_a_probe_finds_it_back() -> None:
    back = threading.Event()
    answering = Answering(back.is_set, probe_every=0.02)
    try:
        assert answering.down is None
        answering.stopped("no answer within 2 s")
        assert answering.down == "not answering (for 0 s)"
        time.sleep(0.1)
        assert answering.down is not None  # the probe keeps asking
        back.set()
        deadline = time.monotonic() + 2
        while answering.down is not None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert answering.down is None
    finally:
        answering.close()
