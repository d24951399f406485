"""The shell transport: the same core, workflow and store as Slack, in a terminal.

Type `/promote …` as the current user; release messages, answers only you see, and thread
replies print as text; buttons are typed (`approve 1`, `reject 1`); `as U_BOB` switches user.
Reads commands from stdin when it is not a terminal, so it can be scripted.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import sys
import threading
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TextIO

from bot.core.authz import WhoCanApprove
from bot.core.commands import Cancel
from bot.core.markup import unescape, user
from bot.core.model import Reply
from bot.core.render import NoticeView, RequestView
from bot.core.texts import help_text
from bot.core.workflow import Workflow

CHANNEL = "shell"
_MENTION = re.compile(r"<@([A-Za-z0-9_]+)>")
_GROUP = re.compile(r"<!subteam\^([A-Za-z0-9_]+)>")
_LINK = re.compile(r"<(https?://[^|>]+)\|([^>]+)>")
_USER = re.compile(r"^[UW][A-Z0-9_]{2,}$")
_REQUEST = re.compile(r"^#?(\d{1,12})$")
_BUTTONS = {
    "approve": " [comment…]",
    "reject": " <reason…>",
    "cancel": " [reason…]",
    "rollback": "",
}

SHELL_HELP = """Shell commands:
  /promote …          as in Slack (try /promote help)
  approve <request> [comment…]   click Approve (with a comment)
  reject <request> <reason…>     click Reject, saying why
  cancel <request> [reason…]     cancel a pending request
  rollback <request>  click Roll back (on a succeeded promotion)
  as <user>           act as another user (--sandbox only)    whoami   who you are now
  help                this help              exit               leave (so does end of input)"""


@dataclass(frozen=True)
class Extra:
    """A command of this shell's own, beyond Slack's (the sandbox's `znyx-ui`)."""

    usage: str  # for `help`
    run: Callable[[str, list[str]], Awaitable[str]]  # (user, the words after it) → what to say


def plain(text: str) -> str:
    """The core's markup for a terminal: `<@U1>` → `@U1`, `<!subteam^S1>` → `group S1`,
    `<url|label>` → `label (url)`, and outside text as it was (`&lt;` → `<`)."""
    text = _LINK.sub(r"\2 (\1)", _GROUP.sub(r"group \1", _MENTION.sub(r"@\1", text)))
    return unescape(text)


def who_can_approve(who: WhoCanApprove) -> str:
    """User groups, whose members the shell can't look up, or else up to five people."""
    if who.groups:
        return " or ".join(f"group {g}" for g in who.groups) + " (members unknown in the shell)"
    return ", ".join(f"@{u}" for u in who.people) + (f" and {who.more} more" if who.more else "")


def release_text(view: RequestView) -> str:
    """A release message as a framed block of text."""
    lines = [f"┌ #{view.request_id} Promote {view.title}", f"│ {view.status}"]
    people = f"Requested by {user(view.requester)}"
    if view.approvers:
        people += ", approved by " + ", ".join(f"@{u}" for u in view.approvers)
    if view.discounted:
        people += " (no longer counting: " + ", ".join(f"@{u}" for u in view.discounted) + ")"
    lines.append(f"│ {people}")
    if view.can_approve:
        lines.append(f"│ Can approve: {who_can_approve(view.can_approve)}")
    if view.link:
        lines.append(f"│ {view.link}")
    lines += [f"│ {f.label}: {f.value}" for f in view.facts]
    lines += [f"│ ⚠️ {w}" for w in view.warnings]
    if view.emergency:
        lines.append(f"│ 🚨 Emergency (needs one approval more): {view.emergency}")
    lines += [f"│ {plain(hold)}" for hold in view.holds]
    lines += [f"│ {line}" for line in view.timing]
    lines += [f"│ {line}" for line in said_lines(view)]
    if view.drift:
        lines.append(f"│ ⚠️ Out of date: {view.drift}. Approving will not promote it.")
    lines.append(f"│ Target {view.target} · {view.policy}")
    if view.buttons:
        lines.append(f"└ [approve {view.request_id}]  [reject {view.request_id}]")
    elif view.can_roll_back:
        lines.append(f"└ [rollback {view.request_id}]")
    else:
        lines.append("└")
    return plain("\n".join(lines))


def thread_text(view: RequestView) -> str:
    """The outcome posted under a release message."""
    who = f" by @{view.decided_by}" if view.decided_by and view.outcome is None else ""
    lines = [f"  ↳ #{view.request_id} {view.status}{who}"]
    if view.outcome is not None:
        lines += [f"    {f.label}: {f.value}" for f in view.outcome.facts]
        if view.outcome.check:
            lines.append(f"    What to check: {view.outcome.check}")
    lines += [f"    {line}" for line in said_lines(view)]
    if view.rolls_back is not None:
        lines.append(f"    ↩️ Rolls back #{view.rolls_back}")
    if view.can_roll_back:
        lines.append(f"    [rollback {view.request_id}]")
    return plain("\n".join(lines))


def said_lines(view: RequestView) -> list[str]:
    """What people said: approvers' comments, and why it was rejected or cancelled."""
    lines = [f"💬 @{who}: {text}" for who, text in view.comments]
    if view.reason and view.decided_by and view.outcome is None:
        lines.append(f"Reason: {view.reason}")
    return lines


def notice_text(view: NoticeView) -> str:
    """A direct message, as the shell shows it (to whoever it is for)."""
    by = f" by @{view.by}" if view.by else ""
    lines = [f"  ✉ to @{view.user}: {view.emoji} {view.lead}{by} — {view.title}"]
    if view.detail:
        lines.append(f"    {view.label or 'Detail'}: {view.detail}")
    if view.check:
        lines.append(f"    What to check: {view.check}")
    return plain("\n".join(lines))


class ShellChat:
    """The `Chat` port on a terminal: messages are printed, their reference is the request id."""

    def __init__(self, write: Callable[[str], None]) -> None:
        self.write = write
        self._shown: dict[str, str] = {}

    async def find_request(self, channel: str, request_id: int, since: datetime) -> str | None:
        return None  # a terminal never loses a post

    async def post_request(self, channel: str, view: RequestView, *, request_id: int) -> str:
        self.write(release_text(view))
        ts = str(view.request_id)
        self._shown[ts] = view.status
        return ts

    async def update_request(self, channel: str, ts: str, view: RequestView) -> None:
        if self._shown.get(ts) != view.status:  # the terminal shows changes, not repaints
            self._shown[ts] = view.status
            self.write(plain(f"  · #{view.request_id} {view.status}"))

    async def post_in_thread(self, channel: str, ts: str, view: RequestView) -> None:
        self.write(thread_text(view))

    async def find_outcome(self, channel: str, ts: str, request_id: int) -> bool:
        return False  # a terminal shows what it printed; a stopped shell's output is gone

    async def post_note(self, channel: str, text: str, *, thread_ts: str | None = None) -> str:
        lead, more = ("  ↳ ", "    ") if thread_ts else ("📣 ", "   ")
        lines = plain(text).splitlines() or [""]
        self.write("\n".join([lead + lines[0], *(more + line for line in lines[1:])]))
        return thread_ts or "note"

    def link(self, channel: str, ts: str) -> str | None:
        return None  # the terminal has no links: requests are named by number

    async def post_notice(self, view: NoticeView) -> None:
        self.write(notice_text(view))

    async def time_zone(self, user: str) -> str | None:
        return None  # a terminal knows no one's time zone: the config's `timezone` is used

    async def find_notice(self, user: str, key: str, since: datetime) -> bool:
        return False  # a terminal never loses a print


class Shell:
    def __init__(
        self,
        workflow: Workflow,
        user: str,
        write: Callable[[str], None],
        *,
        may_switch_user: bool = True,
        extras: Mapping[str, Extra] | None = None,
    ) -> None:
        """`may_switch_user` is for the sandbox only: against real providers the shell acts
        only as the user it was started as, so the audit log never names someone who didn't."""
        self.workflow = workflow
        self.user = user
        self.write = write
        self.may_switch_user = may_switch_user
        self.extras = dict(extras or {})

    def _tell(self, reply: Reply | str | None) -> None:
        if reply is not None:
            text = reply.text if isinstance(reply, Reply) else reply
            self.write("\n".join(f"» {line}" for line in plain(text).splitlines()))

    async def handle(self, line: str) -> bool:
        """Carry out one line; False when the shell should end."""
        words = line.split()
        if not words or words[0].startswith("#"):
            return True
        verb = words[0].lower()
        if verb in ("exit", "quit"):
            return False
        if verb in ("/promote", "promote"):
            text = line.split(None, 1)[1] if len(words) > 1 else ""
            checked = self.workflow.check(self.user, text)
            if isinstance(checked, Reply):
                self._tell(checked)
            else:
                self._tell(await self.workflow.run(self.user, checked, CHANNEL))
        elif verb in ("approve", "reject", "cancel", "rollback"):
            await self._button(verb, words)
        elif verb == "as":
            if not self.may_switch_user:
                self._tell(
                    f"`as` works only with --sandbox. Against real providers this shell acts "
                    f"only as @{self.user}, so the audit log never names someone who didn't "
                    "act: start it again with --as <user> to act as someone else."
                )
            elif len(words) != 2 or not _USER.match(words[1]):
                self._tell("Usage: as <Slack user id>, e.g. as U_BOB")
            else:
                self.user = words[1]
                roles = ", ".join(self.workflow.roles_of(self.user)) or "none"
                self._tell(f"You are now @{self.user} (roles: {roles}).")
        elif verb == "whoami":
            roles = ", ".join(self.workflow.roles_of(self.user)) or "none"
            self._tell(f"You are @{self.user} (roles: {roles}).")
        elif verb in ("help", "?"):
            self._tell(SHELL_HELP)
            for name, extra in self.extras.items():
                self._tell(f"  {name} {extra.usage}")
            self._tell(help_text(self.workflow.rules, self.user))
        elif verb in self.extras:
            self._tell(await self.extras[verb].run(self.user, words[1:]))
        else:
            self._tell(f"Unknown command {words[0]!r}: type help.")
        # Direct messages this line made owed print now, before the next prompt, not over it
        # (the `deliver` job would send them a moment later; each is sent once either way).
        await self.workflow.deliver_due()
        return True

    async def _button(self, verb: str, words: list[str]) -> None:
        """`approve 1 [comment…]`, `reject 1 <reason…>`, `cancel 1 [reason…]`, `rollback 1`."""
        match = _REQUEST.match(words[1]) if len(words) >= 2 else None
        said = " ".join(words[2:]) or None
        form = _BUTTONS[verb]
        if match is None or (verb == "reject" and said is None) or (verb == "rollback" and said):
            self._tell(f"Usage: {verb} <request number>{form}, e.g. {verb} 1")
            return
        request_id, wf = int(match.group(1)), self.workflow
        if verb == "approve":
            self._tell(await wf.approve(self.user, request_id, said))
        elif verb == "reject":
            self._tell(await wf.reject(self.user, request_id, said))
        elif verb == "cancel":
            self._tell(await wf.run(self.user, Cancel(request_id, said), CHANNEL))
        else:
            self._tell(await wf.rollback(self.user, request_id, CHANNEL))

    async def run(self, stdin: TextIO = sys.stdin) -> int:
        """Read lines from `stdin` (a script, a pipe) until `exit` or its end; the exit
        status, 0. On a terminal, `shell_prompt.Prompt` reads them instead, with a line editor.
        """
        interactive = stdin.isatty()
        while True:
            prompt = f"{self.user}> "
            try:
                if interactive:
                    line = await _in_thread(functools.partial(input, prompt))
                else:
                    line = await _in_thread(stdin.readline)
                    if not line:
                        return 0
                    line = line.rstrip("\n")
                    if line.strip():
                        self.write(prompt + line)  # scripted runs read as transcripts
            except EOFError:
                return 0
            if not await self.handle(line):
                return 0


def _in_thread(read: Callable[[], str]) -> asyncio.Future[str]:
    """`read()` in a thread of its own, so the event loop runs the bot's jobs meanwhile. The
    thread is a daemon: a Ctrl-C ends the shell at once, not once the read returns (a thread
    of the loop's executor would be waited for until the next line)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[str] = loop.create_future()

    def settle(result: str | None, error: BaseException | None) -> None:
        if future.done():
            return  # the shell stopped waiting
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result or "")

    def work() -> None:
        result: str | None = None
        error: BaseException | None = None
        try:
            result = read()
        except BaseException as exc:  # EOFError, a closed stream: the caller's to judge
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=work, name="shell-stdin", daemon=True).start()
    return future
