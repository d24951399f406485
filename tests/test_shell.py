"""`promote-bot shell --sandbox` as a process, driven by scripts on stdin: transcripts."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bot.config import parse_config
from bot.core.workflow import Workflow
from bot.store import SqliteStore
from bot.transports.shell import Shell, ShellChat
from tests.shell_sandbox import sandbox_shell

ROOT = Path(__file__).resolve().parents[1]


def shell(
    script: str, *args: str, cwd: Path | None = None, state: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """The shell as a process; what it leaves behind (its log) goes under `state`, by default
    a folder of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "PROMOTE_BOT"))}
    env["PYTHONPATH"] = str(ROOT)  # run this checkout's code from any folder
    env["XDG_STATE_HOME"] = str(state or tempfile.mkdtemp(prefix="promote-bot-state-"))
    return subprocess.run(
        [sys.executable, "-m", "bot", "shell", *args],
        input=script,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=cwd or ROOT,
    )


def test_a_whole_session(tmp_path: Path) -> None:
    script = "\n".join(
        [
            "/promote znyx guardrails staging",
            "approve 1",  # U_ALICE asked: her own approval doesn't count
            "as U_MALLORY",
            "/promote znyx guardrails dev",  # an outsider is refused
            "approve 1",
            "as U_BOB",
            "approve 1",  # a second release manager: it runs
            "as U_CAROL",
            "/promote whop apbu_ios153",  # pending: refused up front
            "/promote appstore ios 2.4.0 153",
            "as U_ALICE",
            "approve 2",
            "/promote history",
        ]
    )
    result = shell(script + "\n", "--sandbox", cwd=tmp_path)
    out = result.stdout
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""

    assert "U_ALICE> /promote znyx guardrails staging" in out
    assert "┌ #1 Promote guardrails policy bundle: staging → prod" in out
    assert "[approve 1]  [reject 1]" in out
    assert "» You asked for this promotion, so your approval doesn't count" in out
    assert "U_MALLORY> /promote znyx guardrails dev\n» You can't request this" in out
    assert "U_MALLORY> approve 1\n» You can't approve or reject this" in out
    assert "↳ #1 ✅ Promoted: guardrails bundle v2 is active in prod" in out
    assert "Published by: slack:U_ALICE via promote-bot #1 (" in out  # (this database's name)

    assert "» Build apbu_ios153 is pending: only approved or draft builds can be promoted." in out

    assert "┌ #2 Promote ios 2.4.0: attach build 153" in out
    assert "Attached now: 152" in out and "encryption is not declared yet" in out
    assert "↳ #2 ✅ Promoted: build 153 is attached to ios 2.4.0" in out

    history = out[out.index("U_ALICE> /promote history") :]
    assert "succeeded `appstore:ios` by the bot" in history
    assert "#1 approved `znyx:guardrails:prod` by @U_BOB" in history
    assert "#1 approval refused `znyx:guardrails:prod` by @U_ALICE" in history
    assert "refused `whop:storefront` by @U_CAROL" in history
    assert not list(tmp_path.iterdir())  # the sandbox keeps its database in a temporary folder


def test_help_lists_what_the_current_user_may_do() -> None:
    out = shell("help\nas U_CAROL\nhelp\nas U_MALLORY\n/promote help\n", "--sandbox").stdout
    alice, carol, mallory = (
        out.split("> help")[1],
        out.split("> help")[2],
        out.split("/promote help")[-1],
    )
    assert "/promote znyx" in alice and "approve <request>" in alice
    assert (
        "/promote znyx" not in carol and "/promote whop" in carol and "/promote appstore" in carol
    )
    assert "no role" in mallory and "/promote whop" not in mallory


def test_exit_and_end_of_input_leave_cleanly() -> None:
    result = shell("exit\n/promote znyx guardrails dev\n", "--sandbox")
    assert result.returncode == 0 and "┌" not in result.stdout
    result = shell("", "--sandbox")
    assert result.returncode == 0


def test_typos_are_answered_not_crashed() -> None:
    result = shell("aprove 1\napprove one\nas bob\n/promote\n", "--sandbox")
    assert result.returncode == 0
    assert "Unknown command 'aprove': type help." in result.stdout
    assert "Usage: approve <request number>" in result.stdout
    assert "Usage: as <Slack user id>" in result.stdout


def test_rehearse_a_role_map(tmp_path: Path) -> None:
    config = tmp_path / "mine.toml"
    config.write_text(
        '[roles]\nmobile = ["developer:manage_builds"]\n[members]\nU_DANA = ["mobile"]\n'
        '[policies."whop:*"]\napprovals = 0\n'
    )
    result = shell(
        "/promote whop apbu_ios151\n", "--sandbox", "--config", str(config), "--as", "U_DANA"
    )
    assert result.returncode == 0, result.stderr
    assert "runs without approval" in result.stdout
    assert (
        "↳ #1 ✅ Promoted: apbu_ios151 is the production ios build of storefront" in result.stdout
    )


def test_without_sandbox_the_user_must_be_named() -> None:
    result = shell("", "--config", "promote-bot.example.toml")
    assert result.returncode == 2
    assert (
        result.stderr == "promote-bot: --as USER is required without --sandbox (a Slack user id)\n"
    )


async def test_without_sandbox_the_shell_acts_only_as_its_user() -> None:
    rules = parse_config(
        {"roles": {"rm": ["bundle:publish"]}, "members": {"U_ALICE": ["rm"], "U_BOB": ["rm"]}}
    )
    said: list[str] = []
    chat = ShellChat(said.append)
    store = SqliteStore()
    shell = Shell(Workflow(rules, store, {}, chat), "U_ALICE", said.append, may_switch_user=False)
    await shell.handle("as U_BOB")
    await shell.handle("whoami")
    assert "`as` works only with --sandbox" in said[0]
    assert said[1] == "» You are @U_ALICE (roles: rm)."
    assert store.history() == []  # nothing was recorded in anyone's name


def test_in_the_shell_a_group_is_named_but_its_members_get_no_roles(tmp_path: Path) -> None:
    config = tmp_path / "mine.toml"
    config.write_text(
        '[roles]\nmobile = ["developer:manage_builds"]\n'
        '[members]\nU_DANA = ["mobile"]\nS_MOBILE = ["mobile"]\n'
    )
    script = "/promote whop apbu_ios151\nas U_ERIN\napprove 1\n"
    result = shell(script, "--sandbox", "--config", str(config), "--as", "U_DANA")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "│ Can approve: group S_MOBILE (members unknown in the shell)" in out
    assert "You are now @U_ERIN (roles: none)." in out
    assert "» You can't approve or reject this" in out


def test_roll_back_in_the_shell_with_rollback_approvals(tmp_path: Path) -> None:
    config = tmp_path / "mine.toml"
    config.write_text(
        '[roles]\nmobile = ["developer:manage_builds"]\n'
        '[members]\nU_DANA = ["mobile"]\nU_ERIN = ["mobile"]\n'
        '[policies."whop:*"]\napprovals = 1\nrollback_approvals = 0\n'
    )
    script = "\n".join(
        [
            "/promote whop apbu_ios151",
            "as U_ERIN",
            "approve 1",
            "rollback 1",  # the typed button: runs at once under rollback_approvals = 0
            "/promote rollback 1",
            "/promote status 2",
        ]
    )
    result = shell(script + "\n", "--sandbox", "--config", str(config), "--as", "U_DANA")
    out = result.stdout
    assert result.returncode == 0, result.stderr
    assert "↳ #1 ✅ Promoted: apbu_ios151 is the production ios build of storefront" in out
    assert "    [rollback 1]" in out
    assert "┌ #2 Promote storefront app build apbu_ios150 → production" in out
    assert "│ ↩️ Rolls back #1" in out and "runs without approval" in out
    assert "↳ #2 ✅ Promoted: apbu_ios150 is the production ios build of storefront" in out
    assert (
        "#1 ✅ Promoted: apbu_ios151 is the production ios build of storefront (rolled back by #2)"
        in out
    )
    assert "» #1 was already rolled back by #2." in out
    assert "» ↩️ Rolls back #1" in out


def test_pending_locks_and_break_glass_in_the_shell(tmp_path: Path) -> None:
    script = "\n".join(
        [
            "/promote znyx guardrails staging",
            "/promote lock znyx:*:prod incident 4521",
            "as U_BOB",
            "/promote pending",
            "approve 1",  # locked: refused, naming who and why
            "/promote locks",
            "/promote znyx guardrails staging --emergency hotfix",  # #1 is still open for it
            "/promote unlock znyx:*:prod",
            "approve 1",
        ]
    )
    result = shell(script + "\n", "--sandbox", cwd=tmp_path)
    out = result.stdout
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert "» 🔒 Locked `znyx:*:prod`: incident 4521. 1 open request now shows it." in out
    assert "U_BOB> /promote pending\n» *1 open request you may act on*" in out
    assert "#1 guardrails policy bundle: staging → prod" in out and "🔒 held" in out
    assert "» #1 can't be approved now:" in out
    assert "locked by @U_ALICE since" in out and "incident 4521" in out
    assert "U_BOB> /promote locks\n» *Locks*\n» • 🔒 `znyx:*:prod` locked by @U_ALICE" in out
    assert "» 🔓 Unlocked `znyx:*:prod`." in out
    assert "↳ #1 ✅ Promoted" in out


def test_a_break_glass_request_that_could_never_be_approved_is_refused() -> None:
    # The sandbox has two people who may publish bundles: a break-glass request needs two
    # approvals, and the requester can't give one, so only one person is left to.
    result = shell("/promote znyx guardrails staging --emergency prod is down\n", "--sandbox")
    assert result.returncode == 0
    assert "needs 2 approvals, and only 1 configured person other than you" in result.stdout
    assert "nothing was posted" in result.stdout and "┌ #1" not in result.stdout


def test_rehearsing_a_config_greets_with_its_people_as_one_who_has_a_role(tmp_path: Path) -> None:
    config = tmp_path / "mine.toml"
    config.write_text(
        '[roles]\nviewer = []\nmobile = ["developer:manage_builds"]\n'
        '[members]\nU_VIC = ["viewer"]\nU_DANA = ["mobile"]\nU_ERIN = ["mobile"]\n'
        'S_MOBILE = ["mobile"]\n'
    )
    result = shell("whoami\n", "--sandbox", "--config", str(config))
    out = result.stdout
    assert result.returncode == 0, result.stderr
    greeting = out[: out.index("U_DANA> whoami")]
    people = f"People, with their roles in {config}:\n  U_VIC      viewer\n  U_DANA     mobile\n"
    assert people in greeting
    assert "group S_MOBILE: mobile (its members are unknown here: no role)" in greeting
    assert "U_ALICE" not in greeting and "U_MALLORY" not in greeting  # the sandbox's own people
    assert "You are U_DANA (mobile); switch with: as U_ERIN." in greeting  # U_VIC may do nothing
    assert "/promote whop apbu_ios151" in greeting and "/promote znyx" not in greeting
    assert "» You are @U_DANA (roles: mobile)." in out


def test_the_sandbox_says_who_you_are_and_how_to_switch() -> None:
    out = shell("", "--sandbox").stdout
    assert "You are U_ALICE (release-manager); switch with: as U_BOB." in out
    assert "Tab completes" not in out  # the line editor's keys: only on a terminal


async def test_decisions_in_the_shell_say_why_and_people_are_told() -> None:
    said: list[str] = []
    async with sandbox_shell(said.append) as sandbox:
        shell, workflow = sandbox.shell, sandbox.workflow
        for line in (
            "/promote znyx guardrails staging",
            "as U_BOB",
            "reject 1",  # a reason is required
            "reject 1 the soak <!channel> failed",
            "as U_ALICE",
            "/promote znyx guardrails dev",
            "cancel 2 asked too early",
            "/promote znyx guardrails dev",
            "as U_BOB",
            "approve 3 dashboards green",
        ):
            await shell.handle(line)
            await workflow.deliver_due()  # the `deliver` job, as its timer would
    out = "\n".join(said)
    assert "» Usage: reject <request number> <reason…>, e.g. reject 1" in out
    assert "  ↳ #1 🚫 Rejected by @U_BOB\n    Reason: the soak <!channel> failed" in out
    assert (
        "  ✉ to @U_ALICE: 🚫 Your request #1 was rejected by @U_BOB — guardrails policy bundle: "
        "staging → prod\n    Reason: the soak <!channel> failed"
    ) in out
    assert "  ↳ #2 🚫 Cancelled by @U_ALICE\n    Reason: asked too early" in out
    assert "    💬 @U_BOB: dashboards green" in out  # in #3's outcome
    assert out.count("✉ to @U_BOB: ⏳") == 3  # each request waited for him, once each
    assert "✉ to @U_ALICE: 👍 Your request #3 was approved by @U_BOB" in out
    assert "✉ to @U_ALICE: ✅ Your request #3 succeeded" in out
    assert "✉ to @U_ALICE: 🚫 Your request #2" not in out  # she cancelled it herself


def test_a_failing_preview_is_told_and_its_log_line_goes_to_the_log_file(tmp_path: Path) -> None:
    result = shell("/promote whop apbu_nope\n", "--sandbox", cwd=tmp_path, state=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "» Whop has no app build apbu_nope (HTTP 404" in result.stdout
    assert "WARNING" not in result.stdout and "preview of" not in result.stdout
    assert result.stderr == ""  # nothing mixes into the chat on the terminal
    log = (tmp_path / "promote-bot" / "shell.log").read_text()
    assert "WARNING bot.core.lifecycle: preview of whop:storefront failed: Whop has no app" in log
    assert oct((tmp_path / "promote-bot" / "shell.log").stat().st_mode & 0o777) == "0o600"
