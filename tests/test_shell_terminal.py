"""The shell on a terminal, as a person uses it: `promote-bot shell --sandbox` on a
pseudo-terminal, sent the keys a person presses (arrows, Ctrl-C, Ctrl-D), and the line editor
in-process on a pipe input, with the bot printing while a line is being typed."""

from __future__ import annotations

import asyncio
import fcntl
import io
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from prompt_toolkit.application import create_app_session
from prompt_toolkit.data_structures import Size
from prompt_toolkit.history import InMemoryHistory
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output.vt100 import Vt100_Output

from bot import logs
from bot.transports.shell_prompt import INTERRUPTED, Prompt, ShellHistory, terminal_writer
from tests.shell_sandbox import sandbox_shell

ROOT = Path(__file__).resolve().parents[1]
UP, LEFT, CTRL_C, CTRL_D = "\x1b[A", "\x1b[D", "\x03", "\x04"
BRACKETED_PASTE = "\x1b[?2004h"
_ESCAPES = re.compile(r"\x1b\[[0-9;?<=>]*[ -/]*[@-~]|\x1b[()][0-9A-Za-z]|\x1b[=>78]|\r")


def visible(raw: str) -> str:
    """What a terminal shows of `raw`, roughly: its text without the escape sequences."""
    return _ESCAPES.sub("", raw)


class Terminal:
    """`promote-bot shell …` on a pseudo-terminal of 100 x 40."""

    def __init__(self, *args: str, state: Path) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "PROMOTE_BOT"))}
        env.pop("NO_COLOR", None)
        env.update(
            PYTHONPATH=str(ROOT),
            XDG_STATE_HOME=str(state),
            TERM="xterm-256color",
            PROMPT_TOOLKIT_NO_CPR="1",  # nothing here answers "where is the cursor?"
        )
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bot", "shell", *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            cwd=state,
            start_new_session=True,  # and the terminal is its own, as a terminal's shell is:
            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),  # Ctrl-C is a SIGINT
        )
        os.close(slave)
        self.master = master
        self.raw = ""

    def send(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    def _read(self, wait: float) -> bool:
        """Take in what the shell printed within `wait` seconds; False once it closed."""
        ready, _, _ = select.select([self.master], [], [], wait)
        if not ready:
            return True
        try:
            data = os.read(self.master, 65536)
        except OSError:  # the shell is gone and its side of the terminal closed
            return False
        self.raw += data.decode("utf-8", "replace")
        return bool(data)

    def seen(self, text: str, count: int = 1, within: float = 30.0) -> str:
        """Wait until `text` was shown `count` times; what was shown so far."""
        deadline = time.monotonic() + within
        while visible(self.raw).count(text) < count:
            if time.monotonic() > deadline or not self._read(0.05):
                raise AssertionError(f"{text!r} not shown; the screen had:\n{visible(self.raw)}")
        return visible(self.raw)

    def prompts(self, count: int, within: float = 30.0) -> None:
        """Wait until the line editor has started `count` prompts (each turns on bracketed
        paste as it starts, once the terminal is in raw mode)."""
        deadline = time.monotonic() + within
        while self.raw.count(BRACKETED_PASTE) < count:
            if time.monotonic() > deadline or not self._read(0.05):
                raise AssertionError(f"{count} prompts not shown:\n{visible(self.raw)}")

    def exit_status(self, within: float = 30.0) -> int:
        """Wait for the shell to end (reading what it prints meanwhile); its exit status."""
        deadline = time.monotonic() + within
        while self.process.poll() is None:
            if time.monotonic() > deadline:
                self.process.kill()
                raise AssertionError(f"the shell did not end; the screen had:\n{self.raw!r}")
            self._read(0.05)
        while self._read(0.05) and select.select([self.master], [], [], 0)[0]:
            pass
        os.close(self.master)
        return self.process.wait()


def ready(term: Terminal) -> None:
    term.seen("U_ALICE>")
    term.prompts(1)


def test_arrow_keys_edit_and_walk_the_history_across_sessions(tmp_path: Path) -> None:
    term = Terminal("--sandbox", state=tmp_path)
    ready(term)
    term.send("/promote lcks" + LEFT * 3 + "o\r")  # ← moves the cursor: "lcks" becomes "locks"
    shown = term.seen("Next freeze")
    assert "Unknown command" not in shown and "\\x1b" not in shown
    term.send(UP + "\r")  # ↑ brings the line back
    term.seen("Next freeze", count=2)
    term.prompts(3)  # (a Ctrl-D typed while a command runs is the terminal's, not ours)
    term.send(CTRL_D)
    assert term.exit_status() == 0

    history = tmp_path / "promote-bot" / "history"
    assert history.read_text().count("+/promote locks\n") == 1  # the same line is kept once
    assert history.stat().st_mode & 0o777 == 0o600

    term = Terminal("--sandbox", state=tmp_path)  # a new session: the history is still there
    ready(term)
    term.send(UP + "\r")
    term.seen("Next freeze")
    term.send("exit\r")
    assert term.exit_status() == 0


def test_markup_is_rendered_and_wrapped_on_a_terminal(tmp_path: Path) -> None:
    term = Terminal("--sandbox", state=tmp_path)
    ready(term)
    term.send("/promote lock znyx:*:prod incident 4521 " + "while the database is restored " * 3)
    term.send("\r")
    term.seen("Locked")
    term.send("/promote locks\r")
    shown = term.seen("» Freezes now")
    assert "*Locks*" not in shown and "`znyx:*:prod`" not in shown  # no raw markup
    assert re.search(r"\x1b\[[0-9;]*1m(\x1b\[[0-9;]*m)*Locks", term.raw)  # bold
    locked = shown[shown.index("» • 🔒") :].splitlines()
    assert len(locked[0]) <= 100 and locked[1].startswith("»   ")  # wrapped under its bullet
    term.prompts(3)
    term.send(CTRL_D)
    assert term.exit_status() == 0


def test_outside_text_shows_on_a_terminal_as_it_was_typed(tmp_path: Path) -> None:
    term = Terminal("--sandbox", state=tmp_path)
    ready(term)
    term.send("/promote lock znyx:*:prod Q&A <!here> a&amp;b\r")
    term.seen("Locked")
    term.prompts(2)
    [told] = [line for line in visible(term.raw).splitlines() if "» 🔒 Locked" in line]
    assert told.endswith(": Q&A <!here> a&amp;b.")  # not read as markup: shown as typed
    term.send(CTRL_D)
    assert term.exit_status() == 0


def test_ctrl_c_clears_the_line_and_twice_on_an_empty_line_leaves(tmp_path: Path) -> None:
    term = Terminal("--sandbox", state=tmp_path)
    ready(term)
    term.send("/promote locks" + CTRL_C)
    term.prompts(2)
    term.send("\r")  # the line was cleared: Enter runs nothing
    term.prompts(3)
    term.send(CTRL_C)
    term.seen("(To leave: Ctrl-D, exit, or Ctrl-C again.)")
    term.prompts(4)
    term.send(CTRL_C)
    assert term.exit_status() == INTERRUPTED
    assert "Next freeze" not in visible(term.raw)
    assert "+/promote locks" not in (tmp_path / "promote-bot" / "history").read_text()


def test_a_secret_typed_into_the_shell_is_never_written_to_its_history(tmp_path: Path) -> None:
    history = ShellHistory(tmp_path / "state" / "history", logs.Redactor(["sandbox-whop-key"]))
    for line in (
        "/promote locks",
        "/promote lock whop:* xoxb-1234-5678-abcdef",  # shaped like a Slack token
        "/promote lock whop:* sandbox-whop-key leaked",  # a configured secret's value
        " /promote pending",  # a leading space keeps a line out, as in bash
        "/promote locks",
        "/promote pending",
    ):
        history.append_string(line)
    written = (tmp_path / "state" / "history").read_text()
    assert written.count("+/promote locks\n") == 2 and "+/promote pending\n" in written
    assert "xoxb" not in written and "sandbox-whop-key" not in written
    assert " /promote pending" not in written
    assert history.get_strings()[-1] == "/promote pending"  # this session still has them all
    assert len(history.get_strings()) == 6


def test_a_history_made_before_with_a_looser_mode_is_narrowed(tmp_path: Path) -> None:
    folder = tmp_path / "state"
    folder.mkdir(mode=0o755)
    (folder / "history").write_text("")
    (folder / "history").chmod(0o644)
    ShellHistory(folder / "history", logs.Redactor([]))
    assert folder.stat().st_mode & 0o777 == 0o700
    assert (folder / "history").stat().st_mode & 0o777 == 0o600


def test_ctrl_c_while_reading_a_pipe_leaves_at_once_with_130(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "PROMOTE_BOT"))}
    env["PYTHONPATH"] = str(ROOT)
    env["XDG_STATE_HOME"] = str(tmp_path)  # its log file, not the home folder's
    shell = subprocess.Popen(
        [sys.executable, "-m", "bot", "shell", "--sandbox"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
        # As a terminal starts it, Ctrl-C not ignored: a program started with SIGINT ignored
        # keeps ignoring it, and a test run may be such a program.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert shell.stdout is not None and shell.stdin is not None
    while "Try:" not in shell.stdout.readline():
        pass
    time.sleep(0.3)  # past the start-up, waiting for a line that doesn't come
    shell.send_signal(signal.SIGINT)
    try:
        assert shell.wait(timeout=20) == INTERRUPTED  # not "when Enter is pressed"
    finally:
        shell.kill()
        shell.stdin.close()
        shell.stdout.close()
        assert shell.stderr is not None
        shell.stderr.close()


class Screen(io.StringIO):
    """The terminal a pipe-input prompt writes to: 80 columns."""

    def output(self) -> Vt100_Output:
        return Vt100_Output(self, lambda: Size(rows=24, columns=80), term="xterm")

    def text(self) -> str:
        return visible(self.getvalue())


async def until(condition: Callable[[], bool], within: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_what_happens_meanwhile_prints_above_the_line_being_typed() -> None:
    screen = Screen()
    with create_pipe_input() as keys, create_app_session(input=keys, output=screen.output()):
        async with sandbox_shell(terminal_writer()) as sandbox:
            prompt = Prompt(sandbox.shell, InMemoryHistory())
            running = asyncio.create_task(prompt.run())
            keys.send_text("/promote znyx guardrails staging\r")
            await until(lambda: "[approve 1]" in screen.text())
            keys.send_text("/promote sta")  # typing, not yet sent
            await until(lambda: screen.text().endswith("/promote sta"))

            sandbox.clock.now += timedelta(days=2)
            await sandbox.workflow.sweep()  # the expiry job, while the line is half typed
            await until(lambda: "↳ #1 ⌛ Expired" in screen.text())
            after = screen.text()[screen.text().index("↳ #1 ⌛ Expired") :]
            await until(lambda: screen.text().endswith("U_ALICE> /promote sta"))
            assert "U_ALICE> /promote sta" in after  # the line is drawn again below, as it was

            keys.send_text("tus 1\r")  # and goes on where it was
            await until(lambda: "Expired" in screen.text().split("/promote status 1")[-1])
            keys.send_text("\x04")
            assert await asyncio.wait_for(running, 20) == 0


async def test_completion_and_the_prompt_follow_the_current_user() -> None:
    screen = Screen()
    with create_pipe_input() as keys, create_app_session(input=keys, output=screen.output()):
        async with sandbox_shell(terminal_writer()) as sandbox:
            prompt = Prompt(sandbox.shell, InMemoryHistory(), people=lambda: ["U_ALICE", "U_BOB"])
            running = asyncio.create_task(prompt.run())
            keys.send_text("/promote znyx guardrails staging\r")
            await until(lambda: "[approve 1]" in screen.text())
            line = prompt.session.default_buffer  # the line being edited
            keys.send_text("as U_B\t")  # Tab: the only one it can be
            await until(lambda: line.text == "as U_BOB")
            keys.send_text("\r")
            await until(lambda: "You are now @U_BOB" in screen.text())
            await until(lambda: screen.text().endswith("U_BOB>"))  # the prompt says who
            keys.send_text("appr\t")
            await until(lambda: line.text == "approve")
            keys.send_text(" \t")  # the one open request
            await until(lambda: line.text == "approve 1")
            keys.send_text("\r")
            await until(lambda: "↳ #1 ✅ Promoted" in screen.text())
            keys.send_text(CTRL_C + CTRL_C)
            assert await asyncio.wait_for(running, 20) == INTERRUPTED
