"""Bolt listeners: ack at once, then turn the payload into core calls (lazy listeners).

One `AsyncApp` serves both HTTP (`POST /slack/events`) and Socket Mode. Nothing slow sits
between a request and its ack: the ack path only parses and checks the role map (no I/O);
previews, provider calls and Web API posts run after it.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_bolt.authorization import AuthorizeResult
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.config import ConfigError
from bot.core.workflow import Reply, Workflow
from bot.transports.slack.blocks import APPROVE, REJECT
from bot.transports.slack.home import register_home

log = logging.getLogger(__name__)

COMMAND = "/promote"


async def _tell(respond: AsyncRespond, reply: Reply | None) -> None:
    """An answer only the person who acted sees."""
    if reply is not None:
        await respond(text=reply.text, response_type="ephemeral", replace_original=False)


def _answering_errors(
    work: Callable[[dict[str, Any], AsyncRespond], Awaitable[None]],
) -> Callable[[dict[str, Any], AsyncRespond], Awaitable[None]]:
    """Work after the ack: a bug is logged and the person told, never left in silence."""

    @functools.wraps(work)
    async def guarded(body: dict[str, Any], respond: AsyncRespond) -> None:
        try:
            await work(body, respond)
        except Exception:
            log.exception("%s failed", work.__name__)
            await _tell(respond, Reply("promote-bot hit an internal error; it has been logged."))

    return guarded


def _request_id(body: dict[str, Any]) -> int | None:
    try:
        value = body["actions"][0]["value"]
        return int(value) if str(value).isdecimal() and len(str(value)) <= 12 else None
    except (KeyError, IndexError, TypeError):
        return None


async def identify(client: AsyncWebClient) -> AuthorizeResult:
    """Call `auth.test` once, at start-up: it checks the token, and Bolt then needs no Web API
    call before acking a request (by default it makes one on the first request)."""
    try:
        response = await client.auth_test()
    except SlackApiError as exc:
        raise ConfigError(
            f"SLACK_BOT_TOKEN: Slack rejected it ({exc.response.get('error')})"
        ) from None
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise ConfigError(
            f"SLACK_API_URL: Slack could not be reached at {client.base_url} ({type(exc).__name__})"
        ) from None
    return AuthorizeResult.from_auth_test_response(
        auth_test_response=response, bot_token=client.token
    )


def create_app(
    workflow: Workflow,
    *,
    identity: AuthorizeResult,
    api_url: str,
    signing_secret: str | None,
) -> AsyncApp:
    """The Slack app; `signing_secret` is None only for Socket Mode."""

    async def authorize() -> AuthorizeResult:
        return identity

    app = AsyncApp(
        client=AsyncWebClient(base_url=api_url),  # Bolt's own; the token comes from `authorize`
        authorize=authorize,
        signing_secret=signing_secret or "",
        request_verification_enabled=signing_secret is not None,
        logger=logging.getLogger("slack_bolt"),
    )

    async def ack_command(ack: AsyncAck, command: dict[str, Any]) -> None:
        checked = workflow.check(command["user_id"], command.get("text", ""))
        if isinstance(checked, Reply):
            await ack(response_type="ephemeral", text=checked.text)
        else:
            await ack()

    @_answering_errors
    async def run_command(body: dict[str, Any], respond: AsyncRespond) -> None:
        command = body
        if not workflow.first_delivery(command.get("trigger_id")):
            return  # Slack delivered this one twice: it was handled already
        checked = workflow.check(command["user_id"], command.get("text", ""))
        if not isinstance(checked, Reply):  # a Reply was already given with the ack
            await _tell(
                respond, await workflow.run(command["user_id"], checked, command["channel_id"])
            )

    async def ack_click(ack: AsyncAck) -> None:
        await ack()

    def clicked(
        decide: Callable[[str, int], Awaitable[Reply | None]],
    ) -> Callable[[dict[str, Any], AsyncRespond], Awaitable[None]]:
        """A button's work after its ack: the request id is all the button carries."""

        @_answering_errors
        async def on_click(body: dict[str, Any], respond: AsyncRespond) -> None:
            if not workflow.first_delivery(body.get("trigger_id")):
                return
            request_id = _request_id(body)
            if request_id is None:
                await _tell(respond, Reply("That button carries no request number."))
                return
            await _tell(respond, await decide(body["user"]["id"], request_id))

        on_click.__name__ = f"on_{decide.__name__}"  # Bolt tells lazy functions apart by name
        return on_click

    app.command(COMMAND)(ack=ack_command, lazy=[run_command])
    app.action(APPROVE)(ack=ack_click, lazy=[clicked(workflow.approve)])
    app.action(REJECT)(ack=ack_click, lazy=[clicked(workflow.reject)])
    register_home(app, workflow)

    @app.error
    async def on_error(error: Exception, body: dict[str, Any]) -> None:
        log.error("unhandled error for a %s payload: %r", body.get("type", "command"), error)

    return app
