"""Bolt listeners: ack at once, then turn the payload into core calls (lazy listeners).

One `AsyncApp` serves both HTTP (`POST /slack/events`) and Socket Mode. Nothing slow sits
between a request and its ack: the ack path only parses and checks the role map (no I/O);
previews, provider calls and Web API posts run after it.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Handler
from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_bolt.authorization import AuthorizeResult
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.config import ConfigError
from bot.core.ports import StoreError
from bot.core.workflow import Reply, Workflow
from bot.transports.slack.blocks import APPROVE, REJECT, ROLLBACK
from bot.transports.slack.home import register_home
from bot.transports.slack.inbox import Inbox, click_payload, store_trouble

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
    identity = AuthorizeResult.from_auth_test_response(
        auth_test_response=response, bot_token=client.token
    )
    identity["app_id"] = response.get("app_id")  # clicks must come from this app
    return identity


def web_app(app: AsyncApp, path: str, port: int = 0) -> web.Application:
    """Bolt's aiohttp app for `path`, answering every request below 500: a payload that makes
    Bolt or a listener fail is a bad request (400, one log line), never a 500 and a traceback."""
    application = app.web_app(path=path, port=port)

    @web.middleware
    async def below_500(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException:
            raise
        except Exception as exc:
            log.warning("a request to %s could not be read: %r", request.path, exc)
            return web.Response(status=400, text="promote-bot could not read this request")
        if response.status >= 500 and response.status != 503:  # 503: shutting down, on purpose
            log.warning(
                "a request to %s failed in Bolt (%s); answered 400", request.path, response.status
            )
            return web.Response(status=400, text="promote-bot could not read this request")
        return response

    application.middlewares.append(below_500)
    return application


@contextlib.contextmanager
def _bolt_sees_no_token_setting() -> Iterator[None]:
    """`AsyncApp(token=None)` falls back to the SLACK_BOT_TOKEN environment variable, and with a
    `client` given as well it then warns "As you gave `client` as well, `token` will be unused"
    (slack_bolt/app/async_app.py). We give the token through `authorize`, read from our own
    settings: so Bolt is built without that variable in sight, and has nothing to warn about."""
    token = os.environ.pop("SLACK_BOT_TOKEN", None)
    try:
        yield
    finally:
        if token is not None:
            os.environ["SLACK_BOT_TOKEN"] = token


def create_app(
    workflow: Workflow,
    *,
    identity: AuthorizeResult,
    api_url: str,
    signing_secret: str | None,
    inbox: Inbox | None = None,
) -> AsyncApp:
    """The Slack app; `signing_secret` is None only for Socket Mode. Acknowledged work goes
    through `inbox`, so it survives the process (see bot/transports/slack/inbox.py)."""
    inbox = inbox or Inbox(workflow, identity)

    async def authorize() -> AuthorizeResult:
        return identity

    with _bolt_sees_no_token_setting():
        app = AsyncApp(
            client=AsyncWebClient(base_url=api_url),  # Bolt's own; the token: from `authorize`
            authorize=authorize,
            signing_secret=signing_secret or "",
            request_verification_enabled=signing_secret is not None,
            logger=logging.getLogger("slack_bolt"),
        )

    async def ack_command(ack: AsyncAck, command: dict[str, Any]) -> None:
        if not isinstance(command.get("user_id"), str):
            await ack(response_type="ephemeral", text="promote-bot could not read this command.")
            return
        checked = workflow.check(command["user_id"], str(command.get("text") or ""))
        if isinstance(checked, Reply):
            await ack(response_type="ephemeral", text=checked.text)
            return
        payload = {
            "user": command["user_id"],
            "text": command.get("text", ""),
            "channel": command.get("channel_id"),
            "response_url": command.get("response_url"),
        }
        try:
            if command.get("trigger_id"):
                inbox.accept(command["trigger_id"], "command", payload)
        except StoreError as exc:
            inbox.store_failed(exc)
            await ack(response_type="ephemeral", text=store_trouble(exc))
            return
        await ack()

    @_answering_errors
    async def run_command(body: dict[str, Any], respond: AsyncRespond) -> None:
        if not isinstance(body.get("user_id"), str):
            return  # answered with the ack
        if body.get("trigger_id"):
            await inbox.handle(body["trigger_id"], respond)
            return
        checked = workflow.check(body["user_id"], body.get("text", ""))  # no key: do it now
        if not isinstance(checked, Reply):  # a Reply was already given with the ack
            await _tell(respond, await workflow.run(body["user_id"], checked, body["channel_id"]))

    async def ack_click(ack: AsyncAck, body: dict[str, Any]) -> None:
        payload = click_payload(body)
        actions = body.get("actions")
        first = actions[0] if isinstance(actions, list) and actions else {}
        action_id = first.get("action_id") if isinstance(first, dict) else None
        try:
            if body.get("trigger_id") and action_id:
                inbox.accept(str(body["trigger_id"]), str(action_id), payload)
        except StoreError as exc:
            inbox.store_failed(exc)
        await ack()

    def clicked(
        decide: Callable[[str, int], Awaitable[Reply | None]],
    ) -> Callable[[dict[str, Any], AsyncRespond], Awaitable[None]]:
        """A button's work after its ack: the request id is all the button carries."""

        @_answering_errors
        async def on_click(body: dict[str, Any], respond: AsyncRespond) -> None:
            if body.get("trigger_id"):
                await inbox.handle(body["trigger_id"], respond)
                return
            request_id = _request_id(body)
            if request_id is None:
                await _tell(respond, Reply("That button carries no request number."))
                return
            await _tell(respond, await decide(body["user"]["id"], request_id))

        on_click.__name__ = f"on_{decide.__name__}"  # Bolt tells lazy functions apart by name
        return on_click

    app.command(COMMAND)(ack=ack_command, lazy=[run_command])
    for action_id, decide in (
        (APPROVE, workflow.approve),
        (REJECT, workflow.reject),
        (ROLLBACK, workflow.rollback),
    ):
        inbox.on_click(action_id, decide)
        app.action(action_id)(ack=ack_click, lazy=[clicked(decide)])
    register_home(app, workflow)

    @app.error
    async def on_error(error: Exception, body: dict[str, Any]) -> None:
        log.error("unhandled error for a %s payload: %r", body.get("type", "command"), error)

    return app
