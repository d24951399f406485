"""The shell on a terminal: a line editor (prompt_toolkit) around `Shell.handle`.

Arrow keys edit and walk the history, which is kept across sessions in the user's state
folder; Tab completes commands, providers, aliases, environments and request numbers; what
the bot prints meanwhile (an expiry, a background job's warning) appears above the line being
typed, which stays as it was. Ctrl-C clears the line; on an empty line it says how to leave,
and a second one leaves with status 130 (interrupted, as a Ctrl-C anywhere else in the shell);
Ctrl-D on an empty line, or `exit`, leaves with 0.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from prompt_toolkit import PromptSession, print_formatted_text
from prompt_toolkit.application.current import get_app_session
from prompt_toolkit.auto_suggest import AutoSuggestFromHistory
from prompt_toolkit.formatted_text import FormattedText
from prompt_toolkit.history import FileHistory, History, InMemoryHistory
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
from prompt_toolkit.patch_stdout import patch_stdout

from bot import logs
from bot.core.markup import literal
from bot.transports.shell import Shell
from bot.transports.shell_complete import ShellCompleter, find_requests
from bot.transports.shell_render import STYLE, for_terminal

INTERRUPTED = 130  # 128 + SIGINT: what a shell reports for a program left by Ctrl-C
HISTORY_KEPT = 1000  # lines read back from the history file, newest first
LEAVE_HINT = FormattedText(
    [
        ("class:hint", "(To leave: Ctrl-D, "),
        ("class:code", "exit"),
        ("class:hint", ", or Ctrl-C again.)"),
    ]
)


def history_path(environ: dict[str, str] | None = None) -> Path:
    """`$XDG_STATE_HOME/promote-bot/history`, else `~/.local/state/promote-bot/history`."""
    environ = dict(os.environ) if environ is None else environ
    state = environ.get("XDG_STATE_HOME") or ""
    base = Path(state) if os.path.isabs(state) else Path.home() / ".local" / "state"
    return base / "promote-bot" / "history"


class ShellHistory(FileHistory):
    """The history file, only the owner may read it. A line that holds a secret (a configured
    token's value, or anything shaped like a token or a key) or starts with a space is used in
    this session but never written; a line the same as the one before is not kept twice."""

    def __init__(self, path: Path, redactor: logs.Redactor) -> None:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.touch(mode=0o600, exist_ok=True)
        # Made before, by hand or with a looser umask: they are narrowed too (mkdir and touch
        # leave an existing one's mode as it was).
        path.parent.chmod(0o700)
        path.chmod(0o600)
        super().__init__(str(path))
        self.redactor = redactor

    def load_history_strings(self) -> Iterable[str]:
        for n, line in enumerate(super().load_history_strings()):
            if n >= HISTORY_KEPT:
                return
            yield line

    def append_string(self, string: str) -> None:
        if self.get_strings()[-1:] == [string]:
            return
        self._loaded_strings.insert(0, string)
        if string.startswith(" ") or self.redactor.redact(string) != string:
            return
        try:
            self.store_string(string)
        except OSError:
            pass  # a full or read-only disk loses the history, never the session


def open_history(path: Path, redactor: logs.Redactor) -> tuple[History, str | None]:
    """The history at `path`, or one in memory and why, when that folder can't be written."""
    try:
        return ShellHistory(path, redactor), None
    except OSError as exc:
        why = f"History is not kept: cannot write {path} ({exc.strerror or exc})."
        return InMemoryHistory(), why


def terminal_writer() -> Callable[[str], None]:
    """Print the core's texts rendered and wrapped to the terminal's width at that moment;
    while a line is being edited they appear above it."""

    def write(text: str) -> None:
        width = get_app_session().output.get_size().columns
        # The shell writes plain text (people's and providers' words as they were, `<` and `&`
        # among them) with the core's light markup (bold, code): escaped again, so the
        # renderer, which reads Slack's markup, shows those characters rather than reading them.
        print_formatted_text(for_terminal(literal(text), width), style=STYLE)

    return write


@contextmanager
def _logs_above_the_line() -> Iterator[None]:
    """The shell logs to its file (`logs.shell_log`); when that couldn't be opened, our log
    handler writes to the stderr it was given at start-up: point it at the one `patch_stdout`
    put in place, so a warning doesn't break the line being typed."""
    handlers = [
        h
        for h in logging.getLogger().handlers
        if isinstance(h, logging.StreamHandler)
        and h.get_name() == logs.HANDLER_NAME
        and h.stream in (sys.stderr, sys.__stderr__)
    ]
    before = [h.setStream(sys.stderr) for h in handlers]
    try:
        yield
    finally:
        for handler, stream in zip(handlers, before, strict=True):
            if stream is not None:
                handler.setStream(stream)


class Prompt:
    """Reads lines with a line editor and hands each to the shell, until it is left."""

    def __init__(
        self,
        shell: Shell,
        history: History,
        *,
        people: Callable[[], Iterable[str]] = tuple,
    ) -> None:
        """`people()`: whom `as` may switch to, for completion. It reads and writes the
        current prompt_toolkit app session's terminal (tests make one on a pipe)."""
        self.shell = shell
        self._empty_interrupts = 0
        self._interrupted_text = ""
        completer = ShellCompleter(
            lambda: shell.workflow.rules,
            lambda states: find_requests(shell.workflow.store, states),
            lambda: [p for p in people() if p != shell.user] if shell.may_switch_user else [],
        )
        self.session: PromptSession[str] = PromptSession(
            history=history,
            completer=completer,
            complete_while_typing=False,  # Tab completes; typing stays quiet
            auto_suggest=AutoSuggestFromHistory(),
            key_bindings=self._bindings(),
            style=STYLE,
        )

    def _bindings(self) -> KeyBindings:
        bindings = KeyBindings()

        @bindings.add("c-c")
        def _interrupt(event: KeyPressEvent) -> None:
            self._interrupted_text = event.current_buffer.text
            event.app.exit(exception=KeyboardInterrupt(), style="class:aborting")

        return bindings

    def _message(self) -> FormattedText:
        return FormattedText([("class:prompt", f"{self.shell.user}> ")])

    async def run(self) -> int:
        """Read and carry out lines until the shell is left; the exit status."""
        with patch_stdout(raw=True), _logs_above_the_line():
            while True:
                try:
                    line = await self.session.prompt_async(self._message)
                except KeyboardInterrupt:
                    if self._interrupted_text.strip():
                        self._empty_interrupts = 0
                        continue  # the line is cleared: a fresh prompt
                    self._empty_interrupts += 1
                    if self._empty_interrupts >= 2:
                        return INTERRUPTED
                    print_formatted_text(LEAVE_HINT, style=STYLE)
                    continue
                except EOFError:
                    return 0
                self._empty_interrupts = 0
                if not await self.shell.handle(line):
                    return 0
