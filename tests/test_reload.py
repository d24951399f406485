"""A real `promote-bot serve` process reads its config file again on SIGHUP, and when the
file changes: a valid file is in force for the next click, a broken one is refused in one log
line and the previous config stays."""

from __future__ import annotations

import asyncio
import os
import signal
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.config import parse_config
from bot.live import what_changed
from bot.sandbox.slack import FakeSlack
from bot.sandbox.slack_requests import SlackSender
from bot.sandbox.znyx import FakeZnyx
from bot.transports.slack.blocks import APPROVE
from bot.web import WebServer, listening_port
from tests.conftest import (
    ALICE,
    BOB,
    CONFIG,
    DAVE,
    SIGNING_SECRET,
    ZNYX_TOKEN,
    Output,
    seed_znyx,
    spawn_serve,
)

ROOT = Path(__file__).resolve().parents[1]
PREFIXES = ("SLACK_", "ZNYX_", "WHOP_", "ASC_", "PROMOTE_BOT", "PORT")
ZNYX_ONLY = CONFIG[: CONFIG.index("[appstore.apps]")]  # no other provider, no other settings


class Serve(Output):
    """One `promote-bot serve` process; its log lines are collected as they come."""

    def __init__(self, process: asyncio.subprocess.Process, port: int, slack_url: str) -> None:
        super().__init__(process)
        self.sender = SlackSender(f"http://127.0.0.1:{port}", SIGNING_SECRET, slack_url)

    async def stop(self) -> None:
        await self.sender.aclose()
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(self.process.wait(), 15)
        await self._reader


@pytest.fixture
async def serve(tmp_path: Path) -> AsyncIterator[tuple[Serve, FakeSlack, FakeZnyx, Path]]:
    slack, znyx = FakeSlack(), FakeZnyx()
    seed_znyx(znyx)
    config = tmp_path / "promote-bot.toml"
    config.write_text(ZNYX_ONLY)
    async with WebServer(slack.app()) as slack_server, WebServer(znyx.app()) as znyx_server:
        env = {k: v for k, v in os.environ.items() if not k.startswith(PREFIXES)}
        env.update(
            PYTHONPATH=str(ROOT),
            SLACK_BOT_TOKEN=slack.token,
            SLACK_SIGNING_SECRET=SIGNING_SECRET,
            SLACK_API_URL=f"{slack_server.url}/api/",
            ZNYX_API_URL=znyx_server.url,
            ZNYX_TOKEN=ZNYX_TOKEN,
            PROMOTE_BOT_CONFIG=str(config),
            PROMOTE_BOT_DB=str(tmp_path / "bot.db"),
            PORT="0",
        )
        process = await spawn_serve(env)
        assert process.stdout is not None
        async with asyncio.timeout(30):
            port = await listening_port(process.stdout)
        bot = Serve(process, port, slack_server.url)
        try:
            yield bot, slack, znyx, config
        finally:
            if bot.process.returncode is None:
                await bot.stop()


def _told(slack: FakeSlack) -> list[str]:
    return [c.args.get("text", "") for c in slack.calls_to("response_url")]


async def _request(bot: Serve, slack: FakeSlack) -> None:
    before = len(slack.channel_posts())
    await bot.sender.command("znyx guardrails dev", ALICE)
    await slack.wait_for(lambda s: len(s.channel_posts()) == before + 1, within=10)


async def test_sighup_with_a_member_removed_refuses_their_click(
    serve: tuple[Serve, FakeSlack, FakeZnyx, Path],
) -> None:
    bot, slack, znyx, config = serve
    await _request(bot, slack)
    config.write_text(ZNYX_ONLY.replace(f'{DAVE} = ["release-manager"]\n', ""))
    bot.process.send_signal(signal.SIGHUP)
    line = await bot.line("config reloaded", "(SIGHUP)")
    assert line.endswith(f": members removed {DAVE} (release-manager)"), line
    await bot.sender.click(APPROVE, 1, DAVE)
    await slack.wait_for(lambda s: len(_told(s)) == 1, within=10)
    assert _told(slack)[0].startswith("You can't approve or reject this")
    assert znyx.promote_calls == []
    assert bot.process.returncode is None


async def test_a_broken_file_is_refused_in_one_line_and_the_old_config_stays(
    serve: tuple[Serve, FakeSlack, FakeZnyx, Path],
) -> None:
    bot, slack, znyx, config = serve
    config.write_text(ZNYX_ONLY.replace('"policy-engineer"]', '"nobody"]'))
    bot.process.send_signal(signal.SIGHUP)
    line = await bot.line("config reload refused", "(SIGHUP)")
    assert "U0BOB has unknown role 'nobody'" in line and "the previous config stays" in line
    await asyncio.sleep(0.2)
    at = bot.lines.index(line)
    assert not any("Traceback" in later for later in bot.lines[at:])
    # Still running, still under the old config: DAVE may approve.
    await _request(bot, slack)
    await bot.sender.click(APPROVE, 1, DAVE)
    await slack.wait_for(lambda s: any("thread_ts" in c.args for c in s.channel_posts()), within=10)
    assert len(znyx.promote_calls) == 1
    # A fixed file is picked up without a signal, from its modification time.
    config.write_text(ZNYX_ONLY.replace(f'{DAVE} = ["release-manager"]\n', ""))
    line = await bot.line("config reloaded", "(the file changed)")
    assert line.endswith(f": members removed {DAVE} (release-manager)"), line
    assert bot.process.returncode is None
    assert slack.token not in "\n".join(bot.lines)


def test_the_reload_line_names_who_and_what_changed() -> None:
    """User and group ids with their roles, roles with their scopes, policy patterns with the
    keys that changed, and the provider whose section changed; never a count alone."""
    old = parse_config(tomllib.loads(CONFIG))
    new = parse_config(
        tomllib.loads(
            CONFIG.replace(f'{DAVE} = ["release-manager"]\n', "")
            .replace(f'{BOB} = ["policy-engineer"]', f'{BOB} = ["release-manager"]')
            .replace('mobile = ["developer:manage_builds"]', 'mobile = ["bundle:publish"]')
            .replace("[znyx]", 'S0RELEASE = ["mobile"]\n\n[znyx]')
            .replace("guardrails = ", 'extra = "proj-extra"\nguardrails = ')
            + '\n[policies."znyx:*:prod"]\napprovals = 2\nexpires_after = "2h"\n'
        )
    )
    line = what_changed(old, new)
    assert line == (
        "roles changed mobile (developer:manage_builds → bundle:publish); "
        f"members removed {DAVE} (release-manager), "
        f"changed {BOB} (policy-engineer → release-manager); "
        "groups added S0RELEASE (mobile); "
        "policies added znyx:*:prod (approvals 2, expires_after 2h); "
        "providers changed znyx"
    ), line
    assert what_changed(new, new) == "nothing changed"
    assert ZNYX_TOKEN not in line


def test_the_reload_line_names_a_providers_own_policy_keys() -> None:
    """`whop_statuses` is told as the file writes it, not as the core keeps it."""
    strict = '\n[policies."whop:*"]\nwhop_statuses = ["approved"]\n'
    old = parse_config(tomllib.loads(CONFIG))
    new = parse_config(tomllib.loads(CONFIG + strict))
    assert what_changed(old, new) == "policies added whop:* (whop_statuses [approved])"
    looser = parse_config(tomllib.loads(CONFIG + strict.replace('d"]', 'd", "draft"]')))
    assert what_changed(new, looser) == (
        "policies changed whop:* (whop_statuses [approved] → [approved, draft])"
    )
