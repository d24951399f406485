"""A fake Slack Web API that records every call the bot makes.

Answers `auth.test`, `chat.postMessage`, `chat.update`, `chat.postEphemeral`, `views.publish`,
`views.open` (a modal, for a trigger_id at most 3 s old and used once), `conversations.open`
(a direct message conversation, `D…`, posted to and read like a channel),
`conversations.history`, `conversations.replies`, `usergroups.users.list` (members from
`usergroups`; `usergroups_error` makes it fail) and `users.info` (a person's `tz` from
`time_zones`) like Slack does (`{"ok": true, …}` or
`{"ok": false, "error": …}`), checks the bearer token, refuses the Block Kit real Slack
refuses (`invalid_blocks`: over 50 blocks in a message, 100 in a home view, a section's text
over 3000 characters, …), and also accepts posts to response URLs
under `/response/…`, so `respond()` can be observed too.
`apps.connections.open` (with `app_token`, else `invalid_auth`) hands out its own `/socket`
websocket, which says hello like Slack's Socket Mode endpoint and stays open; `send_socket`
delivers a payload over it in an envelope, as Slack does, and returns the app's
acknowledgement. Any method can be made to fail (`fail`): Slack's errors, HTTP statuses, a
proxy's text or HTML page, a reset.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from aiohttp import WSMsgType, web


@dataclass
class SlackCall:
    method: str  # "chat.postMessage", or "response_url" for posts to a response URL
    args: dict
    token: str | None
    at: float = field(default_factory=time.time)
    peer: str = ""  # the caller's host:port, so a connection used again can be told apart


@dataclass
class Failure:
    """How the fake fails a method: Slack's `ok: false` with `error`, an HTTP `status` (429 with
    `retry_after`), a `body` that is not Slack's JSON (a proxy's text or HTML page, of
    `content_type`), `reset` (does the work, then drops the connection before answering),
    `hang` (seconds before answering) or `late` (seconds before it does the work and answers,
    whether or not the caller still waits: a call Slack carried out after the client's timeout);
    `times` calls, or until `until` (time.monotonic())."""

    error: str | None = None
    status: int = 200
    body: str | None = None
    content_type: str = "text/plain"
    retry_after: int | None = None
    reset: bool = False
    hang: float = 0.0
    late: float = 0.0
    times: int | None = 1
    until: float | None = None

    def applies(self) -> bool:
        if self.until is not None:
            return time.monotonic() < self.until
        return self.times is None or self.times > 0


@dataclass
class FakeSlack:
    token: str = "xoxb-test-token"
    app_token: str = "xapp-test-token"  # for apps.connections.open (Socket Mode)
    bot_user_id: str = "UPROMOTEBOT"
    team_id: str = "T0TEST"
    not_in_channels: set[str] = field(default_factory=set)  # where posting fails
    usergroups: dict[str, list[str]] = field(default_factory=dict)  # user group id → user ids
    usergroups_error: str | None = None  # e.g. "ratelimited": usergroups.users.list fails so
    disabled_users: set[str] = field(default_factory=set)  # conversations.open: user_disabled
    time_zones: dict[str, str] = field(default_factory=dict)  # users.info: user id → `tz`
    missing_users: set[str] = field(default_factory=set)  # users.info: user_not_found
    views: list[dict] = field(default_factory=list)  # modals opened with views.open, in order
    _triggers: set[str] = field(default_factory=set)  # trigger ids exchanged for a view
    calls: list[SlackCall] = field(default_factory=list)
    app_id: str = "A0PROMOTE"
    bot_id: str = "BPROMOTEBOT"
    messages: dict[str, list[dict]] = field(default_factory=dict)  # channel → what it shows
    failures: dict[str, Failure] = field(default_factory=dict)  # method → how it fails now
    sockets: list[web.WebSocketResponse] = field(default_factory=list)  # open Socket Mode ones
    refused: list[tuple[str, list[str]]] = field(default_factory=list)  # method, why: blocks
    socket_acks: dict[str, dict] = field(default_factory=dict)  # envelope_id → the app's ack
    # Seconds since the epoch that message timestamps are made of, as Slack's are; tests with
    # a clock of their own give it here, so the bot and its Slack agree on the time.
    clock: Callable[[], float] = time.time
    _ts: itertools.count = field(default_factory=lambda: itertools.count(1))
    _changed: asyncio.Event | None = None
    _late: set[asyncio.Task] = field(default_factory=set)  # calls carried out after answering

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/api/{method}", self._api)
        app.router.add_get("/api/{method}", self._api)  # slack-sdk GETs some read methods
        app.router.add_post("/response/{key}", self._response_url)
        app.router.add_get("/_fake/release/{request_id}", self._release)  # for test senders
        app.router.add_get("/_fake/message/{channel}/{ts}", self._message)  # ... what a click has
        app.router.add_get("/socket", self._socket)
        return app

    async def _release(self, request: web.Request) -> web.Response:
        """Where the latest release message of a request is: what a click on it carries."""
        found = self.release_messages(int(request.match_info["request_id"]))
        if not found:
            return web.json_response({}, status=404)
        last = found[-1]
        return web.json_response(
            {
                "channel": last["channel"],
                "ts": last["ts"],
                "bot_id": last.get("bot_id"),
                "blocks": last.get("blocks"),
            }
        )

    async def _message(self, request: web.Request) -> web.Response:
        """A message as a click on it carries it (`message` of a block_actions payload)."""
        message = self.shown(request.match_info["channel"], request.match_info["ts"])
        if message is None:
            return web.json_response({}, status=404)
        keys = ("ts", "bot_id", "blocks", "thread_ts")
        return web.json_response({k: message[k] for k in keys if k in message})

    def fail(self, method: str, **how: object) -> Failure:
        """Make `method` (or "response_url") fail as `Failure(**how)` says."""
        failure = Failure(**how)  # type: ignore[arg-type]
        self.failures[method] = failure
        return failure

    def shown(self, channel: str, ts: str) -> dict | None:
        """The message at `ts` as the channel shows it now (after its updates). Looked for
        newest first: what is updated is nearly always recent, and a long benchmark's channel
        holds thousands of messages (the fakes' own CPU is the floor a benchmark compares to)."""
        return next((m for m in reversed(self.messages.get(channel, [])) if m["ts"] == ts), None)

    def release_messages(self, request_id: int) -> list[dict]:
        """Every top-level message with a button (or metadata) for `request_id`."""
        found = []
        for channel, messages in self.messages.items():
            for m in messages:
                if (m.get("metadata") or {}).get("event_type") not in (None, REQUEST_EVENT):
                    continue  # a direct message or a reply about it, not its release message
                meta = (m.get("metadata") or {}).get("event_payload") or {}
                values = [
                    e.get("value")
                    for b in m.get("blocks") or []
                    if b.get("type") == "actions"
                    for e in b.get("elements", [])
                ]
                if "thread_ts" not in m and (
                    meta.get("request_id") == request_id or str(request_id) in values
                ):
                    found.append({**m, "channel": channel})
        return found

    def dms(self, user: str) -> list[dict]:
        """The direct messages the bot posted to `user`, in order."""
        return list(self.messages.get(dm_channel(user), []))

    def response_url(self, base_url: str, key: str = "1") -> str:
        return f"{base_url}/response/{key}"

    # --- what tests read -----------------------------------------------------------------

    def calls_to(self, method: str) -> list[SlackCall]:
        return [c for c in self.calls if c.method == method]

    def channel_posts(self) -> list[SlackCall]:
        """chat.postMessage calls to channels (release messages, thread replies), not the
        direct messages to people."""
        return [
            c
            for c in self.calls_to("chat.postMessage")
            if not str(c.args.get("channel", "")).startswith("D")
        ]

    async def wait_for(self, predicate: Callable[[FakeSlack], bool], within: float = 5.0) -> None:
        """Wait until `predicate(self)` holds (the bot works after its ack)."""
        async with asyncio.timeout(within):
            while not predicate(self):
                self._changed = self._changed or asyncio.Event()
                await self._changed.wait()

    # --- HTTP ----------------------------------------------------------------------------

    def _record(
        self, method: str, args: dict, token: str | None, request: web.Request | None = None
    ) -> None:
        peer = (
            request.transport.get_extra_info("peername") if request and request.transport else None
        )
        where = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else ""
        self.calls.append(SlackCall(method, args, token, peer=where))
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
        failure = self.failures.get(method)
        if failure is not None and failure.applies():
            if failure.times is not None:
                failure.times -= 1
            return await self._fail(request, method, args, failure)
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
                    "bot_id": self.bot_id,
                    "app_id": self.app_id,
                }
            )
        if method in ("chat.postMessage", "chat.update", "chat.postEphemeral"):
            channel = args.get("channel")
            if not channel:
                return web.json_response({"ok": False, "error": "channel_not_found"})
            problems = block_problems(args.get("blocks"), MESSAGE_BLOCKS, "/blocks")
            if problems:
                return self._refuse(method, "invalid_blocks", problems)
            if channel in self.not_in_channels:
                return web.json_response({"ok": False, "error": "not_in_channel"})
            if method == "chat.postEphemeral":
                return web.json_response({"ok": True, "message_ts": self._next_ts()})
            return web.json_response(self._post_or_update(method, channel, args))
        if method == "conversations.history":
            # Newest first, between `oldest` and `latest` (exclusive unless `inclusive`),
            # `limit` (default 100) a page, the next page behind `response_metadata`.
            channel = args.get("channel", "")
            oldest, latest = float(args.get("oldest") or 0), float(args.get("latest") or "inf")
            inclusive = str(args.get("inclusive", "")).lower() in ("1", "true")
            top = [
                m
                for m in reversed(self.messages.get(channel, []))
                if "thread_ts" not in m
                and (
                    oldest <= float(m["ts"]) <= latest
                    if inclusive
                    else oldest < float(m["ts"]) < latest
                )
            ]
            start, limit = int(args.get("cursor") or 0), int(args.get("limit") or 100)
            page = {"ok": True, "messages": top[start : start + limit]}
            page["has_more"] = start + limit < len(top)
            if page["has_more"]:  # Slack's cursor is opaque; this one is an offset
                page["response_metadata"] = {"next_cursor": str(start + limit)}
            return web.json_response(page)
        if method == "conversations.replies":
            channel, ts = args.get("channel", ""), str(args.get("ts", ""))
            if self.shown(channel, ts) is None:
                return web.json_response({"ok": False, "error": "thread_not_found"})
            thread = [
                m
                for m in self.messages.get(channel, [])
                if m["ts"] == ts or m.get("thread_ts") == ts
            ]
            start, limit = int(args.get("cursor") or 0), int(args.get("limit") or 1000)
            page: dict = {"ok": True, "messages": thread[start : start + limit]}
            if start + limit < len(thread):  # Slack's cursor is opaque; this one is an offset
                page["response_metadata"] = {"next_cursor": str(start + limit)}
            return web.json_response(page)
        if method == "views.publish":
            view = args.get("view")
            if isinstance(view, str):
                view = json.loads(view)
                args["view"] = view
            if not args.get("user_id") or not isinstance(view, dict):
                return web.json_response({"ok": False, "error": "invalid_arguments"})
            if view.get("type") != "home":
                return web.json_response({"ok": False, "error": "invalid_arguments"})
            problems = block_problems(view.get("blocks"), HOME_BLOCKS, "/view/blocks")
            if problems:
                return self._refuse(method, "invalid_arguments", problems)
            published = {**view, "id": f"V{next(self._ts):08d}", "team_id": self.team_id}
            return web.json_response({"ok": True, "view": published})
        if method == "views.open":
            return web.json_response(self._open_view(args))
        if method == "conversations.open":
            users = str(args.get("users") or "")
            if not users:
                return web.json_response({"ok": False, "error": "users_list_not_supplied"})
            if users[:1] not in ("U", "W") or "," in users or users == self.bot_user_id:
                return web.json_response({"ok": False, "error": "user_not_found"})
            if users in self.disabled_users:
                return web.json_response({"ok": False, "error": "user_disabled"})
            return web.json_response({"ok": True, "channel": {"id": dm_channel(users)}})
        if method == "users.info":
            user = args.get("user")
            if not user:
                return web.json_response({"ok": False, "error": "invalid_arguments"})
            if user in self.missing_users:
                return web.json_response({"ok": False, "error": "user_not_found"})
            found: dict = {"id": user, "team_id": self.team_id, "name": user.lower()}
            if user in self.time_zones:  # a person's profile has one; a bot's has none
                found["tz"] = self.time_zones[user]
            return web.json_response({"ok": True, "user": found})
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

    def _refuse(self, method: str, error: str, problems: list[str]) -> web.Response:
        """Slack's answer to blocks it won't take: `error`, and why in its response_metadata."""
        self.refused.append((method, problems))
        messages = [f"[ERROR] {p}" for p in problems]
        return web.json_response(
            {"ok": False, "error": error, "response_metadata": {"messages": messages}}
        )

    def _open_view(self, args: dict) -> dict:
        """views.open as Slack does it: a trigger_id is good for 3 s after the click that made
        it (its second part is when, in ms, as SlackSender makes them) and for one view."""
        trigger = str(args.get("trigger_id") or "")
        parts = trigger.split(".")
        if len(parts) != 3 or not parts[1].isdecimal():
            return {"ok": False, "error": "invalid_trigger_id"}
        if time.time() - int(parts[1]) / 1000 > TRIGGER_SECONDS:
            return {"ok": False, "error": "expired_trigger_id"}
        if trigger in self._triggers:
            return {"ok": False, "error": "exchanged_trigger_id"}
        view = args.get("view")
        if isinstance(view, str):
            view = json.loads(view)
            args["view"] = view
        problem = _modal_problem(view) or next(
            iter(block_problems(view.get("blocks"), HOME_BLOCKS, "/view/blocks")), None
        )
        if problem:
            return {
                "ok": False,
                "error": "invalid_arguments",
                "response_metadata": {"messages": [f"[ERROR] {problem}"]},
            }
        self._triggers.add(trigger)
        opened = {
            **view,
            "id": f"V{next(self._ts):08d}",
            "team_id": self.team_id,
            "app_id": self.app_id,
            "bot_id": self.bot_id,
            "hash": f"{int(time.time())}.{next(self._ts):08d}",
            "state": {"values": {}},
        }
        self.views.append(opened)
        return {"ok": True, "view": opened}

    def _post_or_update(self, method: str, channel: str, args: dict) -> dict:
        """Do what chat.postMessage or chat.update does to the channel; Slack's answer."""
        shown = self.messages.setdefault(channel, [])
        if method == "chat.update":
            message = self.shown(channel, str(args.get("ts")))
            if message is None:
                return {"ok": False, "error": "message_not_found"}
            message.update(text=args.get("text"), blocks=args.get("blocks"))
        else:
            meta = args.get("metadata")
            message = {
                "type": "message",
                "ts": self._next_ts(),
                "text": args.get("text"),
                "blocks": args.get("blocks"),
                "bot_id": self.bot_id,
                "app_id": self.app_id,
                "metadata": json.loads(meta) if isinstance(meta, str) else meta,
            }
            if args.get("thread_ts"):
                message["thread_ts"] = args["thread_ts"]
            shown.append(message)
        return {"ok": True, "channel": channel, "ts": message["ts"], "message": message}

    async def _fail(
        self, request: web.Request, method: str, args: dict, failure: Failure
    ) -> web.StreamResponse:
        if failure.late:  # done and answered then, even if the caller gave up meanwhile
            task = asyncio.get_running_loop().create_task(self._land(method, args, failure.late))
            self._late.add(task)
            task.add_done_callback(self._late.discard)
            return web.json_response(await asyncio.shield(task))
        if failure.hang:
            await asyncio.sleep(failure.hang)
        if failure.reset:
            if method in ("chat.postMessage", "chat.update") and args.get("channel"):
                self._post_or_update(method, args["channel"], args)  # done, answer lost
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=500)  # never sent: the connection is gone
        headers = {"Retry-After": str(failure.retry_after)} if failure.retry_after else {}
        if failure.body is not None:
            return web.Response(
                status=failure.status,
                text=failure.body,
                content_type=failure.content_type,
                headers=headers,
            )
        error = failure.error or ("ratelimited" if failure.status == 429 else "internal_error")
        return web.json_response(
            {"ok": False, "error": error}, status=failure.status, headers=headers
        )

    async def _land(self, method: str, args: dict, after: float) -> dict:
        """Carry out a post or an update `after` seconds on (recorded as `late <method>`)."""
        await asyncio.sleep(after)
        channel = args.get("channel")
        answer = (
            self._post_or_update(method, channel, args)
            if method in ("chat.postMessage", "chat.update") and channel
            else {"ok": True}
        )
        self._record(f"late {method}", args, None)
        return answer

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        """Socket Mode's websocket: says hello, then keeps the connection open (answering
        pings) until the client or the server closes it."""
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self.sockets.append(ws)
        self._record("socket", {}, None)
        await ws.send_json({"type": "hello", "num_connections": len(self.sockets)})
        async for message in ws:
            try:
                ack = json.loads(message.data) if message.type == WSMsgType.TEXT else None
            except ValueError:
                ack = None
            if isinstance(ack, dict) and ack.get("envelope_id"):
                self.socket_acks[str(ack["envelope_id"])] = ack
                self._record("socket_ack", ack, None)
        self.sockets.remove(ws)
        return ws

    async def send_socket(self, payload: dict, kind: str = "interactive") -> dict:
        """Deliver `payload` (a slash command's fields, an interactive payload) to the app
        over its Socket Mode connection, in an envelope as Slack does; the app's ack (with
        its `payload`, if it answered with one), within Slack's 3 seconds or TimeoutError."""
        envelope_id = f"env-{next(self._ts):08d}"
        await self.sockets[-1].send_json(
            {
                "envelope_id": envelope_id,
                "type": kind,
                "payload": payload,
                "accepts_response_payload": kind in ("interactive", "slash_commands"),
                "retry_attempt": 0,
                "retry_reason": "",
            }
        )
        await self.wait_for(lambda s: envelope_id in s.socket_acks, within=TRIGGER_SECONDS)
        return self.socket_acks[envelope_id]

    async def _response_url(self, request: web.Request) -> web.Response:
        args = await _args(request)
        args["key"] = request.match_info["key"]
        self._record("response_url", args, None, request)
        failure = self.failures.get("response_url")
        if failure is not None and failure.applies():
            if failure.times is not None:
                failure.times -= 1
            return await self._fail(request, "response_url", args, failure)
        return web.Response(text="ok")

    def _next_ts(self) -> str:
        """A message's ts: its second, and a sequence number (unique, in posting order)."""
        return f"{int(self.clock())}.{next(self._ts):06d}"


# What Slack refuses of Block Kit (api.slack.com/reference/block-kit): a message holds at most
# 50 blocks and a home view 100; a section's text at most 3000 characters, its fields 10 of 2000
# each; a header's text 150; a context's elements 10; an actions block's elements 25.
MESSAGE_BLOCKS, HOME_BLOCKS = 50, 100
_TEXT_LIMITS = {"section": 3000, "header": 150}


def block_problems(blocks: object, most: int, where: str) -> list[str]:
    """Why Slack would refuse `blocks` (its words, with a JSON pointer), or [] if it wouldn't."""
    if blocks is None:
        return []
    if not isinstance(blocks, list):
        return [f"must be an array [json-pointer:{where}]"]
    problems = []
    if len(blocks) > most:
        problems.append(f"must provide no more than {most} items [json-pointer:{where}]")
    for i, block in enumerate(blocks):
        at = f"{where}/{i}"
        if not isinstance(block, dict):
            problems.append(f"must be an object [json-pointer:{at}]")
            continue
        kind = block.get("type")
        text = (
            (block.get("text") or {}).get("text") if isinstance(block.get("text"), dict) else None
        )
        limit = _TEXT_LIMITS.get(str(kind))
        if limit and isinstance(text, str) and len(text) > limit:
            problems.append(f"must be less than {limit + 1} characters [json-pointer:{at}/text]")
        fields = block.get("fields") or []
        if len(fields) > 10:
            problems.append(f"must provide no more than 10 items [json-pointer:{at}/fields]")
        for j, f in enumerate(fields):
            if isinstance(f, dict) and len(str(f.get("text", ""))) > 2000:
                problems.append(f"must be less than 2001 characters [json-pointer:{at}/fields/{j}]")
        most_elements = {"context": 10, "actions": 25}.get(str(kind))
        if most_elements and len(block.get("elements") or []) > most_elements:
            problems.append(
                f"must provide no more than {most_elements} items [json-pointer:{at}/elements]"
            )
    return problems


REQUEST_EVENT = "promote_bot_request"  # the metadata event type of a release message
TRIGGER_SECONDS = 3.0  # how long Slack accepts a trigger_id after the click that made it


def dm_channel(user: str) -> str:
    """The id of the bot's direct message conversation with `user`."""
    return "D" + user[1:]


def _modal_problem(view: object) -> str | None:
    """What Slack would refuse in a modal view, or None (the limits the bot could break)."""
    if not isinstance(view, dict) or view.get("type") != "modal":
        return "a view of type modal is required"
    for key in ("title", "submit", "close"):
        text = (view.get(key) or {}).get("text", "")
        if key == "title" and not text:
            return "title is required"
        if len(text) > 24:
            return f"must be less than 25 characters [json-pointer:/view/{key}/text]"
    if len(str(view.get("private_metadata", ""))) > 3000:
        return "private_metadata must be less than 3001 characters"
    blocks = view.get("blocks")
    if not isinstance(blocks, list) or not blocks or len(blocks) > 100:
        return "blocks must have 1 to 100 items"
    for i, block in enumerate(blocks):
        if block.get("type") == "input":
            element = block.get("element") or {}
            if not block.get("label") or not element.get("action_id"):
                return f"an input needs a label and an element [json-pointer:/view/blocks/{i}]"
            if len((block.get("hint") or {}).get("text", "")) > 2000:
                return f"hint must be less than 2001 characters [json-pointer:/view/blocks/{i}]"
            if int(element.get("max_length", 0)) > 3000:
                return f"max_length must be at most 3000 [json-pointer:/view/blocks/{i}]"
    return None


async def _args(request: web.Request) -> dict:
    """Slack's clients send JSON for some methods, form fields or a query string for others
    (slack-sdk POSTs some, conversations.open among them, with their arguments in the query
    string, which Slack reads as well)."""
    query = dict(request.query)
    if request.method == "GET":
        return query
    raw = await request.text()
    if request.content_type == "application/json":
        return {**query, **(json.loads(raw) if raw else {})}
    args: dict = {**query, **dict(parse_qsl(raw))}
    for key in ("blocks", "attachments", "metadata", "view"):
        if isinstance(args.get(key), str):
            args[key] = json.loads(args[key])
    return args
