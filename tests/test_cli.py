"""`promote-bot` as a process: start-up errors are one line and exit 2; serve runs and stops."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from bot.cli import main
from bot.sandbox.slack import FakeSlack
from bot.web import WebServer, listening_port
from tests.conftest import ASC_ISSUER, ASC_KID, ASC_PEM, CONFIG, spawn_serve

ROOT = Path(__file__).resolve().parents[1]
NOT_A_KEY = "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----"
PREFIXES = ("SLACK_", "ZNYX_", "WHOP_", "ASC_", "PROMOTE_BOT", "PORT")
SECRETS = ("xoxb-very-secret", "signing-very-secret", "znyx-very-secret", "whop-very-secret")


def _env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    config = tmp_path / "promote-bot.toml"
    config.write_text(CONFIG)
    env = {k: v for k, v in os.environ.items() if not k.startswith(PREFIXES)}
    env.update(
        SLACK_BOT_TOKEN=SECRETS[0],
        SLACK_SIGNING_SECRET=SECRETS[1],
        ZNYX_TOKEN=SECRETS[2],
        WHOP_API_KEY=SECRETS[3],
        ASC_ISSUER_ID=ASC_ISSUER,
        ASC_KEY_ID=ASC_KID,
        ASC_PRIVATE_KEY=ASC_PEM,
        PROMOTE_BOT_CONFIG=str(config),
        PROMOTE_BOT_DB=str(tmp_path / "bot.db"),
        PORT="0",
    )
    env.update(overrides)
    return {k: v for k, v in env.items() if v != ""}


def _write(path: Path, text: str) -> None:
    path.write_text(text)


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=env.get("CWD", str(ROOT)),
    )


@pytest.mark.parametrize(
    ("overrides", "line"),
    [
        ({"SLACK_BOT_TOKEN": ""}, "promote-bot: SLACK_BOT_TOKEN is not set"),
        ({"SLACK_SIGNING_SECRET": ""}, "promote-bot: SLACK_SIGNING_SECRET is not set"),
        ({"ZNYX_TOKEN": ""}, "promote-bot: ZNYX_TOKEN is not set"),
        ({"WHOP_API_KEY": ""}, "promote-bot: WHOP_API_KEY is not set"),
        ({"ASC_KEY_ID": ""}, "promote-bot: ASC_KEY_ID is not set"),
        (
            {"ASC_PRIVATE_KEY": ""},
            "promote-bot: ASC_PRIVATE_KEY_PATH or ASC_PRIVATE_KEY must be set",
        ),
        (
            {"ASC_PRIVATE_KEY": NOT_A_KEY},
            "promote-bot: ASC_PRIVATE_KEY: it is not a PEM private key",
        ),
        (
            {"ASC_PRIVATE_KEY": "", "ASC_PRIVATE_KEY_PATH": "/nonexistent/AuthKey.p8"},
            "promote-bot: ASC_PRIVATE_KEY_PATH: cannot read /nonexistent/AuthKey.p8",
        ),
        ({"PORT": "http"}, "promote-bot: PORT: Input should be a valid integer"),
        (
            {"SLACK_BOT_TOKEN": "xoxp-1"},
            "promote-bot: SLACK_BOT_TOKEN: a bot token starts with 'xoxb-'",
        ),
        (
            {"PROMOTE_BOT_CONFIG": "/nonexistent/promote-bot.toml"},
            "promote-bot: PROMOTE_BOT_CONFIG:",
        ),
    ],
)
def test_start_up_errors_are_one_line_and_exit_2(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    overrides: dict[str, str],
    line: str,
) -> None:
    """In-process, for speed; `test_a_bad_config_key_is_named` runs a real process."""
    for name in os.environ:
        if name.startswith(PREFIXES):
            monkeypatch.delenv(name)
    env = _env(tmp_path, SLACK_API_URL="http://127.0.0.1:9/api/", **overrides)
    for name, value in env.items():
        if name.startswith(PREFIXES):
            monkeypatch.setenv(name, value)
    assert main(["serve"]) == 2
    stderr = capsys.readouterr().err
    assert stderr.startswith(line)
    assert stderr.count("\n") == 1 and "Traceback" not in stderr
    assert not any(secret in stderr for secret in SECRETS)


def test_every_missing_or_invalid_setting_is_listed_at_once(tmp_path: Path) -> None:
    env = _env(
        tmp_path,
        SLACK_SIGNING_SECRET="",
        ZNYX_TOKEN="",
        WHOP_API_KEY="",
        ASC_KEY_ID="",
        ASC_PRIVATE_KEY="",
        PORT="http",
        LOG_LEVEL="loud",
        PROMOTE_BOT_DB=str(tmp_path / "no-such-dir" / "bot.db"),
    )
    result = _run(env, "serve")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert all(line.startswith("promote-bot: ") for line in lines)
    said = [line.removeprefix("promote-bot: ") for line in lines]
    for start in (
        "PORT: Input should be a valid integer",
        "LOG_LEVEL: expected one of DEBUG",
        "SLACK_SIGNING_SECRET is not set",
        "ZNYX_TOKEN is not set",
        "WHOP_API_KEY is not set",
        "ASC_KEY_ID is not set",
        "ASC_PRIVATE_KEY_PATH or ASC_PRIVATE_KEY must be set",
        "PROMOTE_BOT_DB:",
    ):
        assert sum(line.startswith(start) for line in said) == 1, (start, said)
    assert len(said) == 8
    assert not any(secret in result.stderr for secret in SECRETS)


def test_a_bad_config_key_is_named(tmp_path: Path) -> None:
    env = _env(tmp_path)
    Path(env["PROMOTE_BOT_CONFIG"]).write_text(CONFIG.replace('"policy-engineer"]', '"nobody"]'))
    result = _run(env, "serve")
    assert result.returncode == 2
    assert "U0BOB has unknown role 'nobody'" in result.stderr and result.stderr.count("\n") == 1


async def test_serve_answers_on_slack_events_and_stops_on_sigterm(tmp_path: Path) -> None:
    slack = FakeSlack(token=SECRETS[0])
    async with WebServer(slack.app()) as fake:
        process = await spawn_serve(_env(tmp_path, SLACK_API_URL=f"{fake.url}/api/"))
        try:
            assert process.stdout is not None
            async with asyncio.timeout(30):
                port = await listening_port(process.stdout)
            assert [c.method for c in slack.calls] == ["auth.test"]  # once, at start-up
            async with httpx.AsyncClient() as http:
                # Unsigned: refused, which proves the route is there and verification is on.
                response = await http.post(
                    f"http://127.0.0.1:{port}/slack/events", content="text=help"
                )
            assert response.status_code == 401
            process.send_signal(signal.SIGTERM)
            output = (await asyncio.wait_for(process.stdout.read(), 15)).decode()
            assert await process.wait() == 0
            assert not any(secret in output for secret in SECRETS)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()


async def test_a_rejected_bot_token_is_one_line_and_exit_2(tmp_path: Path) -> None:
    slack = FakeSlack(token="xoxb-the-real-one")
    async with WebServer(slack.app()) as fake:
        process = await spawn_serve(_env(tmp_path, SLACK_API_URL=f"{fake.url}/api/"))
        output = (await asyncio.wait_for(process.communicate(), 30))[0].decode()
    assert process.returncode == 2
    assert output == "promote-bot: SLACK_BOT_TOKEN: Slack rejected it (invalid_auth)\n"


async def test_a_rejected_bot_token_stays_one_line_with_user_groups_asked_alongside(
    tmp_path: Path,
) -> None:
    """The groups' members are asked for while auth.test is in flight (here: a slow one);
    refused too, they are dropped unsaid: the token's line is the only one."""
    slack = FakeSlack(token="xoxb-the-real-one")
    slack.fail("auth.test", error="invalid_auth", hang=0.5)
    env = _env(tmp_path)
    _write(
        Path(env["PROMOTE_BOT_CONFIG"]), CONFIG.replace("[znyx]", 'S0RELEASE = ["mobile"]\n[znyx]')
    )
    async with WebServer(slack.app()) as fake:
        process = await spawn_serve({**env, "SLACK_API_URL": f"{fake.url}/api/"})
        output = (await asyncio.wait_for(process.communicate(), 30))[0].decode()
    assert process.returncode == 2
    assert output == "promote-bot: SLACK_BOT_TOKEN: Slack rejected it (invalid_auth)\n"
    assert sorted(c.method for c in slack.calls) == ["auth.test", "usergroups.users.list"]


async def test_an_unreachable_slack_is_one_line_and_exit_2(tmp_path: Path) -> None:
    async with WebServer(FakeSlack().app()) as fake:
        url = f"{fake.url}/api/"  # closed again when the block ends
    process = await spawn_serve(_env(tmp_path, SLACK_API_URL=url))
    output = (await asyncio.wait_for(process.communicate(), 30))[0].decode()
    assert process.returncode == 2
    assert output.startswith("promote-bot: SLACK_API_URL: Slack could not be reached at ")
    assert output.count("\n") == 1


def test_console_script_and_help() -> None:
    result = subprocess.run([sys.executable, "-m", "bot", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "serve" in result.stdout
    if shutil.which("promote-bot") is None:
        pytest.skip("package not installed as a console script here")
    result = subprocess.run(["promote-bot", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("promote-bot ")


def test_importing_the_cli_leaves_the_garbage_collector_as_it_was() -> None:
    """It is paused only while bot/cli.py imports what it needs."""
    check = "import gc, bot.cli; print(gc.isenabled())"
    for before in ("", "import gc; gc.disable(); "):
        result = subprocess.run(
            [sys.executable, "-c", before + check], capture_output=True, text=True, cwd=ROOT
        )
        assert result.stdout.strip() == ("False" if before else "True"), result.stderr


def test_check_config_prints_a_summary_of_a_good_file(tmp_path: Path) -> None:
    config = tmp_path / "good.toml"
    config.write_text(
        CONFIG.replace("[znyx]", 'S0RELEASE = ["release-manager"]\n\n[znyx]')
        + '\n[policies."znyx:*:prod"]\napprovals = 2\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(PREFIXES)}  # none needed
    result = _run(env, "check-config", str(config))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith(f"{config} is valid.\n")
    assert "Roles (3):" in out and "Members (4 people):" in out
    assert "Groups (1 Slack user group):\n  S0RELEASE: release-manager" in out
    assert "not resolved here" in out and "the shell can't" in out
    assert "  znyx: Znyx projects: guardrails, twostage." in out
    assert (
        "  znyx:guardrails:prod: needs 2 approvals, not by the requester "
        '([policies."znyx:*:prod"])' in out
    )
    assert "  whop:storefront: needs 1 approval, not by the requester (the default)" in out


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (CONFIG.replace('"policy-engineer"]', '"nobody"]'), "U0BOB has unknown role 'nobody'"),
        ("[roles\n", "not valid TOML"),
        ("[roles]\n[members]\nsre-team = []\n", "'sre-team' is not a Slack user id"),
    ],
)
def test_check_config_refuses_a_bad_file_in_one_line(tmp_path: Path, text: str, error: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(text)
    env = _env(tmp_path, PROMOTE_BOT_CONFIG=str(config))  # FILE from the setting
    result = _run(env, "check-config")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith(f"promote-bot: {config}") and error in result.stderr
    assert result.stderr.count("\n") == 1
    missing = _run(env, "check-config", str(tmp_path / "nope.toml"))
    assert missing.returncode == 2 and "nope.toml does not exist" in missing.stderr


def test_a_postgres_database_that_cannot_be_reached_is_one_line_and_exit_2(
    tmp_path: Path,
) -> None:
    url = "postgresql://promote_bot:db-very-secret@127.0.0.1:9/promote_bot?connect_timeout=2"
    result = _run(_env(tmp_path, PROMOTE_BOT_DB=url), "serve")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith(
        "promote-bot: PROMOTE_BOT_DB: cannot reach the PostgreSQL database promote_bot on"
        " 127.0.0.1:9: is PostgreSQL running there?"
    ), line
    assert "db-very-secret" not in result.stderr
