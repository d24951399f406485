"""Bolt listeners: ack at once, then turn the payload into core calls (in a work pool).

One `AsyncApp` serves both HTTP (`POST /slack/events`) and Socket Mode. Nothing slow sits
between a request and its ack: the ack path only parses, checks the role map and records the
work in the inbox (one small insert); previews, provider calls and Web API posts run after it,
in a bounded pool of workers (bot/transports/slack/workers.py), so a burst delays release
messages, never acks.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import uuid
from collections.abc import Iterator
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler
from slack_bolt.app.async_server import AsyncSlackAppServer
from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.web.async_client import AsyncWebClient

from bot.core.markup import unescape
from bot.core.model import Reply
from bot.core.ports import StoreError
from bot.core.workflow import Workflow
from bot.store import call_store
from bot.transports.slack.blocks import APPROVE, ROLLBACK
from bot.transports.slack.home import register_home
from bot.transports.slack.inbox import Inbox, click_payload, store_trouble, tell
from bot.transports.slack.modals import register_forms
from bot.transports.slack.workers import WorkPool

log = logging.getLogger(__name__)

COMMAND = "/promote"


class SlackEndpoint:
    """`POST path` for Bolt's app: 503 until the app is there (start-up still waits for Slack to
    answer `auth.test`, and Slack sends the request again), then Bolt's own aiohttp handler."""

    def __init__(self, path: str, app: AsyncApp | None = None) -> None:
        self.path = path
        self._server: AsyncSlackAppServer | None = None
        if app is not None:
            self.serve(app)

    def serve(self, app: AsyncApp) -> None:
        self._server = app.server(path=self.path)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if self._server is None:
            return web.Response(status=503, text="promote-bot is starting: Slack has not answered")
        return await self._server.handle_post_requests(request)


def web_app(app: AsyncApp | SlackEndpoint, path: str) -> web.Application:
    """An aiohttp app for Bolt's `path`, answering every request below 500 (but the 503 of
    starting or stopping): a payload that makes Bolt or a listener fail is a bad request (400,
    one log line), never a 500 and a traceback. Given a `SlackEndpoint`, Slack's requests wait
    for its app (503 meanwhile); other routes (health) may be added to it."""
    endpoint = app if isinstance(app, SlackEndpoint) else SlackEndpoint(path, app)
    application = web.Application()
    application.router.add_post(path, endpoint.handle)

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


def _acks_first(app: AsyncApp, pool: WorkPool) -> None:
    """Have the pool start no new work while a payload is being answered. Both the HTTP and
    the Socket Mode adapter hand every payload to `app.async_dispatch` and send what it returns,
    so this is where a payload's answering begins and ends (a Bolt middleware can't see the
    end: Bolt runs the listeners after the whole middleware chain)."""
    dispatch = app.async_dispatch

    @functools.wraps(dispatch)
    async def first(req: AsyncBoltRequest) -> BoltResponse:
        with pool.answering():
            return await dispatch(req)

    app.async_dispatch = first  # type: ignore[method-assign]


def create_app(
    workflow: Workflow,
    *,
    identity: AuthorizeResult,
    api_url: str,
    signing_secret: str | None,
    inbox: Inbox | None = None,
    pool: WorkPool | None = None,
) -> AsyncApp:
    """The Slack app; `signing_secret` is None only for Socket Mode. Acknowledged work goes
    through `inbox`, so it survives the process (see bot/transports/slack/inbox.py), and is
    done by `pool`'s workers after the ack."""
    inbox = inbox or (pool.inbox if pool else Inbox(workflow, identity))
    pool = pool or WorkPool(inbox)

    async def record(key: str | None, kind: str, payload: dict[str, Any]) -> None:
        """Record acknowledged work and wake a worker; a redelivery is dropped here. The one
        insert runs off the event loop for a store on a network (PostgreSQL): a database that
        does not answer holds up this ack alone (bounded: bot/store/answering.py)."""
        key = key or f"local.{uuid.uuid4().hex}"  # Slack always sends one; recorded anyway
        if await call_store(workflow.store, inbox.accept, key, kind, payload):
            pool.wake(key)

    async def authorize() -> AuthorizeResult:
        return identity

    with _bolt_sees_no_token_setting():
        app = AsyncApp(
            # Named, or Bolt names it after its caller's file with `inspect.stack()`, which reads
            # the source of every frame on the stack (40 ms of start-up).
            name="promote-bot",
            client=AsyncWebClient(base_url=api_url),  # Bolt's own; the token: from `authorize`
            authorize=authorize,
            signing_secret=signing_secret or "",
            request_verification_enabled=signing_secret is not None,
            logger=logging.getLogger("slack_bolt"),
            # Our listeners only record and ack; Bolt then answers as the listener returns
            # instead of polling for the ack every 10 ms from a task of its own.
            process_before_response=True,
        )

    async def ack_command(ack: AsyncAck, command: dict[str, Any]) -> None:
        if not isinstance(command.get("user_id"), str):
            await ack(response_type="ephemeral", text="promote-bot could not read this command.")
            return
        # Slack sends what people typed with `&`, `<` and `>` as entities: the core gets it as
        # typed, and escapes it itself wherever it shows it (bot/core/markup.py).
        text = unescape(str(command.get("text") or ""))
        checked = workflow.check(command["user_id"], text)
        if isinstance(checked, Reply):
            await ack(response_type="ephemeral", text=checked.text)
            return
        payload = {
            "user": command["user_id"],
            "text": text,
            "channel": command.get("channel_id"),
            "response_url": command.get("response_url"),
        }
        try:
            await record(command.get("trigger_id"), "command", payload)
        except StoreError as exc:
            inbox.store_failed(exc)
            await ack(response_type="ephemeral", text=store_trouble(exc))
            return
        await ack()

    async def ack_click(ack: AsyncAck, respond: AsyncRespond, body: dict[str, Any]) -> None:
        payload = click_payload(body)
        actions = body.get("actions")
        first = actions[0] if isinstance(actions, list) and actions else {}
        action_id = first.get("action_id") if isinstance(first, dict) else None
        try:
            if action_id:
                await record(body.get("trigger_id"), str(action_id), payload)
        except StoreError as exc:
            inbox.store_failed(exc)
            await ack()  # a click's ack carries no text: the person is told at response_url
            pool.after_ack(tell(respond, Reply(store_trouble(exc))))
            return
        await ack()

    # These listeners only record and ack (Bolt answers when they return): no lazy listeners,
    # which would copy each request and start a task for each; the pool takes the work.
    app.command(COMMAND)(ack_command)

    async def roll_back(user: str, request_id: int, key: str) -> Reply | None:
        return await workflow.rollback(user, request_id, origin=key)

    inbox.on_click(APPROVE, workflow.approve)  # idempotent by the state's compare-and-set
    inbox.on_asking_click(ROLLBACK, roll_back)  # asks for a request: once per click
    for action_id in (APPROVE, ROLLBACK):
        app.action(action_id)(ack_click)
    register_forms(app, workflow, inbox, record)  # Reject…, Approve with comment…
    register_home(app, workflow)
    _acks_first(app, pool)

    @app.error
    async def on_error(error: Exception, body: dict[str, Any]) -> None:
        log.error("unhandled error for a %s payload: %r", body.get("type", "command"), error)

    return app
