"""A fake Slack Web API that records every call the bot makes.

Answers `auth.test`, `chat.postMessage`, `chat.update`, `chat.postEphemeral` and
`usergroups.users.list` (members from `usergroups`; `usergroups_error` makes it fail) like
Slack does (`{"ok": true, …}` or `{"ok": false, "error": …}`), checks the bearer token, and
also accepts posts to response URLs under `/response/…`, so `respond()` can be observed too.
`apps.connections.open` (with `app_token`) hands out its own `/socket` websocket, which says
hello like Slack's Socket Mode endpoint and stays open.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from aiohttp import web


@dataclass
class SlackCall:
    method: str  # "chat.postMessage", or "response_url" for posts to a response URL
    args: dict
    token: str | None
    at: float = field(default_factory=time.time)


@dataclass
class FakeSlack:
    token: str = "xoxb-test-token"
    app_token: str = "xapp-test-token"  # for apps.connections.open (Socket Mode)
    bot_user_id: str = "UPROMOTEBOT"
    team_id: str = "T0TEST"
    not_in_channels: set[str] = field(default_factory=set)  # where posting fails
    usergroups: dict[str, list[str]] = field(default_factory=dict)  # user group id → user ids
    usergroups_error: str | None = None  # e.g. "ratelimited": usergroups.users.list fails so
    calls: list[SlackCall] = field(default_factory=list)
    sockets: list[web.WebSocketResponse] = field(default_factory=list)  # open Socket Mode ones
    _ts: itertools.count = field(default_factory=lambda: itertools.count(1))
    _changed: asyncio.Event | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/api/{method}", self._api)
        app.router.add_get("/api/{method}", self._api)  # slack-sdk GETs some read methods
        app.router.add_post("/response/{key}", self._response_url)
        app.router.add_get("/socket", self._socket)
        return app

    def response_url(self, base_url: str, key: str = "1") -> str:
        return f"{base_url}/response/{key}"

    # --- what tests read -----------------------------------------------------------------

    def calls_to(self, method: str) -> list[SlackCall]:
        return [c for c in self.calls if c.method == method]

    async def wait_for(self, predicate: Callable[[FakeSlack], bool], within: float = 5.0) -> None:
        """Wait until `predicate(self)` holds (the bot works after its ack)."""
        async with asyncio.timeout(within):
            while not predicate(self):
                self._changed = self._changed or asyncio.Event()
                await self._changed.wait()

    # --- HTTP ----------------------------------------------------------------------------

    def _record(self, method: str, args: dict, token: str | None) -> None:
        self.calls.append(SlackCall(method, args, token))
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        auth = request.headers.get("Authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else None
        args = await _args(request)
        token = token or args.pop("token", None)
        self._record(method, args, token)
        if method == "apps.connections.open":
            if token != self.app_token:
                return web.json_response({"ok": False, "error": "invalid_auth"})
            return web.json_response({"ok": True, "url": f"ws://{request.host}/socket"})
        if token != self.token:
            return web.json_response({"ok": False, "error": "invalid_auth"})
        if method == "auth.test":
            return web.json_response(
                {
                    "ok": True,
                    "url": "https://test.slack.com/",
                    "team": "Test",
                    "user": "promote-bot",
                    "team_id": self.team_id,
                    "user_id": self.bot_user_id,
                    "bot_id": "BPROMOTEBOT",
                }
            )
        if method in ("chat.postMessage", "chat.update", "chat.postEphemeral"):
            channel = args.get("channel")
            if not channel:
                return web.json_response({"ok": False, "error": "channel_not_found"})
            if channel in self.not_in_channels:
                return web.json_response({"ok": False, "error": "not_in_channel"})
            if method == "chat.postEphemeral":
                return web.json_response({"ok": True, "message_ts": self._next_ts()})
            ts = args.get("ts") if method == "chat.update" else self._next_ts()
            message = {"text": args.get("text"), "blocks": args.get("blocks"), "ts": ts}
            return web.json_response({"ok": True, "channel": channel, "ts": ts, "message": message})
        if method == "usergroups.users.list":
            if self.usergroups_error is not None:
                return web.json_response({"ok": False, "error": self.usergroups_error})
            group = args.get("usergroup")
            if not group:
                return web.json_response({"ok": False, "error": "invalid_arguments"})
            if group not in self.usergroups:
                return web.json_response({"ok": False, "error": "no_such_subteam"})
            return web.json_response({"ok": True, "users": list(self.usergroups[group])})
        return web.json_response({"ok": False, "error": "unknown_method"})

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        """Socket Mode's websocket: says hello, then keeps the connection open (answering
        pings) until the client or the server closes it."""
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self.sockets.append(ws)
        self._record("socket", {}, None)
        await ws.send_json({"type": "hello", "num_connections": len(self.sockets)})
        async for _message in ws:
            pass
        self.sockets.remove(ws)
        return ws

    async def _response_url(self, request: web.Request) -> web.Response:
        args = await _args(request)
        args["key"] = request.match_info["key"]
        self._record("response_url", args, None)
        return web.Response(text="ok")

    def _next_ts(self) -> str:
        return f"1700000000.{next(self._ts):06d}"


async def _args(request: web.Request) -> dict:
    """Slack's clients send JSON for some methods, form fields or a query string for others."""
    if request.method == "GET":
        return dict(request.query)
    raw = await request.text()
    if request.content_type == "application/json":
        return json.loads(raw) if raw else {}
    args: dict = dict(parse_qsl(raw))
    for key in ("blocks", "attachments"):
        if isinstance(args.get(key), str):
            args[key] = json.loads(args[key])
    return args
