"""The App Home tab: published with views.publish each time someone opens it.

Slack sends `app_home_opened` (a bot event, see manifest.yml) when a person opens the app;
Bolt acks the event at once and this listener then reads the store and publishes that person's
home: requests waiting for their approval, their own open requests, locks and freezes, the
last events, and what the last 7 days' releases add up to.
"""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.core.workflow import Workflow
from bot.transports.slack.blocks import home_tab

log = logging.getLogger(__name__)


async def publish_home(workflow: Workflow, client: AsyncWebClient, user: str) -> bool:
    """Publish `user`'s App Home as things stand now; False (logged) if Slack refused."""
    try:
        await client.views_publish(user_id=user, view=home_tab(await workflow.home(user)))
    except SlackApiError as exc:
        log.warning("views.publish for %s failed: %s", user, exc.response.get("error"))
        return False
    except (aiohttp.ClientError, TimeoutError) as exc:
        log.warning("views.publish for %s failed: %s", user, type(exc).__name__)
        return False
    return True


def register_home(app: AsyncApp, workflow: Workflow) -> None:
    """Listen for `app_home_opened` on `app` and publish the home of whoever opened it."""

    async def ack(ack: AsyncAck) -> None:
        await ack()

    async def on_home_opened(event: dict[str, Any], client: AsyncWebClient) -> None:
        if event.get("tab", "home") != "home" or not event.get("user"):
            return  # the Messages tab, or a payload without a person
        await publish_home(workflow, client, str(event["user"]))

    # Acked at once; Bolt runs the publishing after the ack, as a lazy listener (the app
    # answers each payload only once its ack listener returns).
    app.event("app_home_opened")(ack=ack, lazy=[on_home_opened])
