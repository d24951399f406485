"""Fixtures that start real servers on loopback: fake Slack, fake Znyx, and the bot itself."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.cli import SLACK_PATH, SlackBot, start_slack_bot
from bot.config import Settings
from bot.sandbox.slack import FakeSlack
from bot.sandbox.znyx import FakeZnyx
from bot.web import WebServer
from tests.slack_requests import SlackSender

SIGNING_SECRET = "test-signing-secret-0123456789abcdef"
ZNYX_TOKEN = "znyx-ci-token"

ALICE = "U0ALICE"  # release manager: requests and approves everything
BOB = "U0BOB"  # policy engineer: bundle:publish
DAVE = "U0DAVE"  # another release manager
CAROL = "U0CAROL"  # mobile developer: builds only, no bundle:publish
MALLORY = "U0MALLORY"  # no roles at all

CONFIG = f"""
[roles]
release-manager = ["bundle:publish", "developer:manage_builds"]
policy-engineer = ["bundle:publish"]
mobile = ["developer:manage_builds"]

[members]
{ALICE} = ["release-manager"]
{BOB} = ["policy-engineer"]
{DAVE} = ["release-manager"]
{CAROL} = ["mobile"]

[znyx]
org = "org-test"

[znyx.projects]
guardrails = "proj-guardrails"
twostage = "proj-twostage"
"""


def seed_znyx(znyx: FakeZnyx) -> None:
    znyx.org_id = "org-test"
    znyx.tokens = {ZNYX_TOKEN: {"bundle:publish"}, "znyx-read-only": set()}
    znyx.add_project("proj-guardrails")
    znyx.publish("proj-guardrails", "dev", "sha256:" + "d" * 64)
    znyx.publish("proj-guardrails", "staging", "sha256:" + "5" * 64)
    znyx.publish("proj-guardrails", "prod", "sha256:" + "0" * 64)
    znyx.add_project("proj-twostage", envs=("dev", "staging"))
    znyx.publish("proj-twostage", "staging", "sha256:" + "2" * 64)


@dataclass
class World:
    slack: FakeSlack
    znyx: FakeZnyx
    bot: SlackBot
    sender: SlackSender
    slack_url: str

    def posted(self) -> list[dict]:
        """Release messages (top-level posts), in order."""
        return [
            c.args for c in self.slack.calls_to("chat.postMessage") if "thread_ts" not in c.args
        ]

    def thread(self) -> list[dict]:
        return [c.args for c in self.slack.calls_to("chat.postMessage") if "thread_ts" in c.args]

    def told(self) -> list[str]:
        """Ephemeral answers sent through response URLs."""
        return [c.args.get("text", "") for c in self.slack.calls_to("response_url")]


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    slack = FakeSlack()
    znyx = FakeZnyx()
    seed_znyx(znyx)
    config = tmp_path / "promote-bot.toml"
    config.write_text(CONFIG)
    async with WebServer(slack.app()) as slack_server, WebServer(znyx.app()) as znyx_server:
        settings = Settings(
            slack_bot_token=slack.token,
            slack_signing_secret=SIGNING_SECRET,
            slack_api_url=f"{slack_server.url}/api/",
            promote_bot_config=config,
            promote_bot_db=tmp_path / "promote-bot.db",
            znyx_api_url=znyx_server.url,
            znyx_token=ZNYX_TOKEN,
        )
        bot = await start_slack_bot(settings)
        web_app = bot.app.web_app(path=SLACK_PATH)
        async with WebServer(web_app) as bot_server:
            sender = SlackSender(bot_server.url, SIGNING_SECRET, slack_server.url)
            try:
                yield World(slack, znyx, bot, sender, slack_server.url)
            finally:
                await sender.aclose()
                await bot.aclose()
