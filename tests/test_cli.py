"""`promote-bot` as a process: start-up errors are one line and exit 2; serve runs and stops."""

from __future__ import annotations

import asyncio
import codecs
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import httpx
import pytest
from slack_sdk.web.async_client import AsyncWebClient

from bot.cli import main
from bot.config import ConfigError
from bot.sandbox.slack import FakeSlack
from bot.transports.slack.startup import identify
from bot.web import WebServer, listening_port
from tests.conftest import ASC_ISSUER, ASC_KID, ASC_PEM, CONFIG, Output, spawn_serve

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
        (
            {"PORT": "http"},
            "promote-bot: PORT: expected a whole number from 0 to 65535, not 'http'",
        ),
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
        "PORT: expected a whole number from 0 to 65535",
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


def test_only_a_bot_token_set_asks_for_the_signing_secret_or_an_app_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _monkey_env(monkeypatch, _env(tmp_path, SLACK_SIGNING_SECRET=""))
    assert main(["serve"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("promote-bot: SLACK_SIGNING_SECRET is not set: HTTP mode needs it")
    assert "or set SLACK_APP_TOKEN" in line and "Socket Mode" in line


def test_a_malformed_app_token_is_one_line_about_it_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """It selects Socket Mode, so the signing secret is not asked for as well."""
    _monkey_env(monkeypatch, _env(tmp_path, SLACK_SIGNING_SECRET="", SLACK_APP_TOKEN="xoxb-1"))
    assert main(["serve"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("promote-bot: SLACK_APP_TOKEN: an app-level token starts with 'xapp-'")


def _monkey_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for name in os.environ:
        if name.startswith(PREFIXES):
            monkeypatch.delenv(name)
    for name, value in env.items():
        if name.startswith(PREFIXES):
            monkeypatch.setenv(name, value)


@pytest.mark.parametrize(
    ("encoding", "line"),
    [
        ("utf-16", "is UTF-16 text, not UTF-8: a config file must be UTF-8 text"),
        (
            "latin-1",
            "is not UTF-8 text (line 1 has the byte 0xe9): a config file must be UTF-8 text",
        ),
    ],
)
def test_a_config_file_not_in_utf8_is_one_line_naming_the_setting(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    encoding: str,
    line: str,
) -> None:
    env = _env(tmp_path)
    config = Path(env["PROMOTE_BOT_CONFIG"])
    config.write_bytes(("# café\n" + CONFIG).encode(encoding))
    _monkey_env(monkeypatch, env)
    assert main(["serve"]) == 2
    assert capsys.readouterr().err == f"promote-bot: PROMOTE_BOT_CONFIG: {config} {line}" + (
        " (in most editors: Save As → Encoding: UTF-8)\n"
    )
    assert main(["check-config"]) == 2
    assert capsys.readouterr().err.startswith(f"promote-bot: {config} {line}")


def test_a_config_file_in_utf8_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    config = tmp_path / "promote-bot.toml"
    config.write_bytes(codecs.BOM_UTF8 + CONFIG.encode())
    result = _run(_env(tmp_path), "check-config", str(config))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{config} is valid.\n")


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


async def test_an_unreachable_slack_is_asked_again_then_one_line_and_exit_2(
    tmp_path: Path,
) -> None:
    async with WebServer(FakeSlack().app()) as fake:
        url = f"{fake.url}/api/"  # closed again when the block ends
    env = _env(tmp_path, SLACK_API_URL=url, PROMOTE_BOT_SLACK_WAIT_SECONDS="1")
    process = await spawn_serve(env)
    output = (await asyncio.wait_for(process.communicate(), 30))[0].decode()
    assert process.returncode == 2 and "Traceback" not in output
    *attempts, last = output.splitlines()
    assert last.startswith(f"promote-bot: SLACK_API_URL: Slack could not be reached at {url} (")
    assert "ClientConnectorError" in last and "attempts in" in last
    failed = [line for line in attempts if "auth.test failed (attempt" in line]
    assert failed and all("ClientConnectorError" in line for line in failed), attempts


TEXT_500 = {"status": 500, "body": "upstream connect error or disconnect/reset before headers"}
HTML_502 = {
    "status": 502,
    "body": "<html><h1>502 Bad Gateway</h1></html>",
    "content_type": "text/html",
}


async def test_a_failing_slack_is_asked_again_then_one_line_and_exit_2(tmp_path: Path) -> None:
    """Not a token problem: asked again with backoff (a log line each) for
    PROMOTE_BOT_SLACK_WAIT_SECONDS, then one line saying what kept failing; never a traceback,
    never 'SLACK_BOT_TOKEN: Slack rejected it'. (Each kind of failure: `test_identify_…`.)"""
    slack = FakeSlack(token=SECRETS[0])
    slack.fail("auth.test", times=None, **TEXT_500)
    async with WebServer(slack.app()) as fake:
        url = f"{fake.url}/api/"
        env = _env(tmp_path, SLACK_API_URL=url, PROMOTE_BOT_SLACK_WAIT_SECONDS="1")
        process = await spawn_serve(env)
        output = (await asyncio.wait_for(process.communicate(), 30))[0].decode()
    assert process.returncode == 2
    assert "Traceback" not in output and "SLACK_BOT_TOKEN" not in output
    *logged, last = output.splitlines()
    words = "HTTP 500, a text body, not Slack's JSON"
    assert last.startswith(f"promote-bot: SLACK_API_URL: Slack kept failing at {url} (")
    assert f"the last: {words}); the token was not checked: try again later" in last, last
    asked = len(slack.calls_to("auth.test"))
    failed = [line for line in logged if "auth.test failed (attempt" in line]
    assert asked >= 2 and len(failed) == asked - 1, logged
    assert all(words in line for line in failed), logged
    assert all(" WARNING " in line or " INFO " in line for line in logged), logged


async def _identify_against(how: dict, wait: float) -> tuple[str, int]:
    """`identify` against a fake Slack whose auth.test fails as `how` says (`FakeSlack.fail`):
    the one line of its ConfigError (Slack's URL as <url>), and how often auth.test was asked."""
    slack = FakeSlack(token=SECRETS[0])
    slack.fail("auth.test", times=None, **how)
    async with WebServer(slack.app()) as fake, aiohttp.ClientSession() as session:
        client = AsyncWebClient(token=SECRETS[0], base_url=f"{fake.url}/api/", session=session)
        with pytest.raises(ConfigError) as caught:
            await identify(client, wait=wait)
        return str(caught.value).replace(client.base_url, "<url>"), len(slack.calls)


async def test_identify_asks_a_failing_slack_again_and_blames_no_token() -> None:
    said = {
        "text-500": (TEXT_500, "HTTP 500, a text body, not Slack's JSON"),
        "html-502": (HTML_502, "HTTP 502, an HTML page, not Slack's JSON"),
        "429": ({"status": 429, "retry_after": 1}, "HTTP 429, error ratelimited, Retry-After 1 s"),
        "503-json": ({"status": 503}, "HTTP 503, error internal_error"),
        "internal_error": ({"error": "internal_error"}, "HTTP 200, error internal_error"),
        "service_unavailable": (
            {"error": "service_unavailable"},
            "HTTP 200, error service_unavailable",
        ),
    }
    ran = await asyncio.gather(*(_identify_against(how, wait=0.2) for how, _ in said.values()))
    for (name, (_, words)), (line, asked) in zip(said.items(), ran, strict=True):
        assert asked == 2, name  # the deadline passed during the backoff: once more, then no
        start, end = (
            "SLACK_API_URL: Slack kept failing at <url> (2 attempts in ",
            (
                f" s, the last: {words}); the token was not checked: try again later "
                "(https://slack-status.com)"
            ),
        )
        assert re.fullmatch(re.escape(start) + r"\d+" + re.escape(end), line), line


async def test_identify_names_the_url_for_an_answer_that_is_not_slacks() -> None:
    """A definite answer is not asked again: one that is not Slack's JSON, or an error that is
    not about the token, names SLACK_API_URL; only Slack's token errors blame SLACK_BOT_TOKEN."""
    not_slack = "SLACK_API_URL: <url> answered auth.test with {}: is it Slack's Web API " + (
        "(https://slack.com/api/)?"
    )
    expected = {
        "html-200": (
            {"body": "<html>Sign in to the proxy</html>", "content_type": "text/html"},
            not_slack.format("HTTP 200, an HTML page, not Slack's JSON"),
        ),
        "text-200": ({"body": "hello"}, not_slack.format("a text body, not Slack's JSON")),
        "html-404": (
            {"status": 404, "body": "<html>Not Found</html>", "content_type": "text/html"},
            not_slack.format("HTTP 404, an HTML page, not Slack's JSON"),
        ),
        "unknown_method": (
            {"error": "unknown_method"},
            not_slack.format("HTTP 200, error unknown_method"),
        ),
        **{
            error: ({"error": error}, f"SLACK_BOT_TOKEN: Slack rejected it ({error})")
            for error in ("token_revoked", "account_inactive", "not_authed", "token_expired")
        },
    }
    ran = await asyncio.gather(*(_identify_against(how, wait=60) for how, _ in expected.values()))
    for (name, (_, line)), answer in zip(expected.items(), ran, strict=True):
        assert answer == (line, 1), name


async def test_while_slack_fails_healthz_answers_readyz_says_why_and_then_the_bot_serves(
    tmp_path: Path,
) -> None:
    """The health server is up before auth.test has answered: /healthz 200, /readyz 503 with
    the last failure, /slack/events 503 (Slack sends again); once Slack answers, it serves."""
    slack = FakeSlack(token=SECRETS[0])
    failing = slack.fail("auth.test", times=None, **TEXT_500)
    async with WebServer(slack.app()) as fake:
        process = await spawn_serve(_env(tmp_path, SLACK_API_URL=f"{fake.url}/api/"))
        output = Output(process)
        try:
            meanwhile = await output.line("/healthz, /readyz and /metrics on port", "meanwhile")
            url = _health_url(meanwhile)
            await output.line("auth.test failed (attempt 1: HTTP 500")
            async with httpx.AsyncClient() as http:
                assert (await http.get(f"{url}/healthz")).status_code == 200
                ready = await http.get(f"{url}/readyz")
                assert ready.status_code == 503
                assert ready.text.startswith("not ready: waiting for Slack: auth.test failed")
                assert "HTTP 500, a text body" in ready.text
                assert (await http.post(f"{url}/slack/events", content="x")).status_code == 503
                failing.times = 0  # Slack is back
                await output.line("listening on http://0.0.0.0:")
                assert (await http.get(f"{url}/readyz")).text == "ready\n"
                unsigned = await http.post(f"{url}/slack/events", content="text=help")
                assert unsigned.status_code == 401  # Bolt's, verifying signatures
            process.send_signal(signal.SIGTERM)
            assert await output.ended() == 0
            assert not any("Traceback" in line for line in output.lines)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()


def _health_url(line: str) -> str:
    """Where the health server answers, from the log line that names its port."""
    match = re.search(r"on port (\d+)|http://0\.0\.0\.0:(\d+)/", line)
    assert match, line
    return f"http://127.0.0.1:{match[1] or match[2]}"


def _socket_env(tmp_path: Path, url: str, app_token: str) -> dict[str, str]:
    return _env(tmp_path, SLACK_API_URL=url, SLACK_APP_TOKEN=app_token, SLACK_SIGNING_SECRET="")


async def test_a_rejected_app_token_is_one_line_naming_it_and_exit_2(tmp_path: Path) -> None:
    """Not slack_bolt's traceback every 10 s for ever: one line, at once."""
    slack = FakeSlack(token=SECRETS[0], app_token="xapp-the-real-one")
    async with WebServer(slack.app()) as fake:
        process = await spawn_serve(_socket_env(tmp_path, f"{fake.url}/api/", "xapp-revoked"))
        output = (await asyncio.wait_for(process.communicate(), 8))[0].decode()
    assert process.returncode == 2
    [line] = [line for line in output.splitlines() if line.startswith("promote-bot: ")]
    assert line.startswith("promote-bot: SLACK_APP_TOKEN: Slack rejected it (invalid_auth): ")
    assert "SLACK_SIGNING_SECRET for HTTP mode" in line
    assert "Traceback" not in output and "Retrying" not in output and "ERROR" not in output
    assert len(slack.calls_to("apps.connections.open")) == 1
    assert "xapp-revoked" not in output


async def test_an_app_token_revoked_while_serving_stops_the_bot_with_exit_2(
    tmp_path: Path,
) -> None:
    slack = FakeSlack(token=SECRETS[0], app_token="xapp-good-for-now")
    async with WebServer(slack.app()) as fake:
        process = await spawn_serve(_socket_env(tmp_path, f"{fake.url}/api/", "xapp-good-for-now"))
        output = Output(process)
        try:
            await output.line("connected to Slack in Socket Mode")
            slack.app_token = "xapp-another-one"  # revoked; then Slack drops the connection
            for ws in list(slack.sockets):
                await ws.close()
            assert await output.ended() == 2
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    told = [line for line in output.lines if "SLACK_APP_TOKEN" in line]
    assert len(told) == 1 and told[0].startswith("promote-bot: SLACK_APP_TOKEN: Slack rejected")
    assert not any("Traceback" in line for line in output.lines)


async def test_socket_mode_keeps_asking_a_failing_slack_visibly_then_connects(
    tmp_path: Path,
) -> None:
    slack = FakeSlack(token=SECRETS[0])
    failing = slack.fail("apps.connections.open", times=None, **TEXT_500)
    async with WebServer(slack.app()) as fake:
        process = await spawn_serve(_socket_env(tmp_path, f"{fake.url}/api/", slack.app_token))
        output = Output(process)
        try:
            assert process.stdout is not None
            health = await output.line("health and metrics listening on")
            url = _health_url(health)
            await output.line("apps.connections.open failed (attempt 2: HTTP 500, a text body")
            async with httpx.AsyncClient() as http:
                ready = await http.get(f"{url}/readyz")
                assert ready.status_code == 503 and "not connected to Slack" in ready.text
                failing.times = 0
                await output.line("connected to Slack in Socket Mode")
                assert (await http.get(f"{url}/readyz")).status_code == 200
            process.send_signal(signal.SIGTERM)
            assert await output.ended() == 0
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    assert not any("Traceback" in line or "SLACK_APP_TOKEN" in line for line in output.lines)


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
        "  znyx:guardrails:prod: needs 2 approvals, not by the requester; expires after 24h; "
        'a rollback needs 2 approvals; --emergency needs 3 approvals ([policies."znyx:*:prod"])'
        in out
    )
    assert (
        "  whop:storefront: needs 1 approval, not by the requester; expires after 24h; "
        "a rollback needs 1 approval; --emergency needs 2 approvals (the default)" in out
    )


def test_check_config_shows_expiry_rollback_and_emergency_approvals(tmp_path: Path) -> None:
    config = tmp_path / "good.toml"
    config.write_text(
        CONFIG
        + '\n[policies."znyx:*:prod"]\napprovals = 1\nexpires_after = "2d"\n'
        + "rollback_approvals = 0\nemergency_approvals = 2\n"
        + '\n[policies."whop:*"]\napprovals = 0\n'
    )
    result = _run(_env(tmp_path), "check-config", str(config))
    assert result.returncode == 0, result.stderr
    assert (
        "  znyx:guardrails:prod: needs 1 approval, not by the requester; expires after 2d; "
        "a rollback runs without approval; --emergency needs 2 approvals "
        '([policies."znyx:*:prod"])'
    ) in result.stdout
    assert (
        "  whop:storefront: runs without approval; a rollback runs without approval; "
        '--emergency needs 1 approval ([policies."whop:*"])'
    ) in result.stdout


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
