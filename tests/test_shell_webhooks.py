"""The out-of-band path in the sandbox shell, in one line: `znyx-ui` changes the fake Znyx as
its own UI would, the fake sends its signed webhook to the shell's receiver, and the bot tells
the change and marks the open request it affects."""

from __future__ import annotations

from tests.test_shell import shell


def test_a_change_in_znyxs_own_ui_is_told_and_shown_on_the_open_request() -> None:
    script = "\n".join(
        [
            "/promote znyx guardrails staging",
            "znyx-ui promote guardrails staging",
            "as U_BOB",
            "approve 1",
            "/promote cancel 1",
            "znyx-ui promote nowhere staging",
            "help",
        ]
    )
    result = shell(script + "\n", "--sandbox")
    out = result.stdout
    assert result.returncode == 0, result.stderr
    said = out.split("znyx-ui promote guardrails staging", 1)[1]
    assert "#1 ⚠️ Out of date: prod's active bundle is v2" in said
    assert "📣 🔔 *guardrails prod changed outside promote-bot* (Znyx)" in said
    assert "published by ui:U_ALICE" in said and "Open requests it affects now say so: #1" in said
    assert "#1 can't be approved: its preview no longer holds" in out
    assert "Request #1 is cancelled." in out
    assert "Usage: znyx-ui promote <project> <source_env>" in out
    assert "znyx-ui promote <project> <source_env> | publish <project> <env>" in out  # in help
    assert out.count("changed outside promote-bot") == 1
