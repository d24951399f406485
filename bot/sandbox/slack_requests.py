"""Requests as Slack sends them: form-encoded, signed with the app's signing secret."""

from __future__ import annotations

import itertools
import json
import time
import uuid
from typing import Any
from urllib.parse import urlencode

import httpx
from slack_sdk.signature import SignatureVerifier

_trigger = itertools.count(1)
_RUN = uuid.uuid4().hex[:12]  # trigger ids are unique across processes, as Slack's are


def trigger_id(n: int, issued: float | None = None) -> str:
    """A trigger id like Slack's (`<n>.<ms>.<hex>`), unique across processes; its middle part
    is when it was made (now, or `issued`), which the fake Slack's views.open checks."""
    at = time.time() if issued is None else issued
    return f"{n}.{int(at * 1000)}.{_RUN}"


class SlackSender:
    """Sends slash commands and button clicks to the bot's `/slack/events` over real HTTP."""

    def __init__(self, bot_url: str, signing_secret: str, response_base: str) -> None:
        self.url = f"{bot_url}/slack/events"
        self.verifier = SignatureVerifier(signing_secret)
        self.response_base = response_base
        limits = httpx.Limits(max_connections=1000, max_keepalive_connections=1000)
        self.http = httpx.AsyncClient(timeout=30, limits=limits)  # load tests open many at once

    async def aclose(self) -> None:
        await self.http.aclose()

    def signed_headers(self, body: str, timestamp: int | None = None) -> dict[str, str]:
        ts = str(int(time.time()) if timestamp is None else timestamp)
        return {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": self.verifier.generate_signature(timestamp=ts, body=body),
        }

    async def post(self, body: str, headers: dict[str, str] | None = None) -> httpx.Response:
        return await self.http.post(
            self.url,
            content=body,
            headers=headers if headers is not None else self.signed_headers(body),
        )

    def command_body(self, text: str, user: str, channel: str = "CRELEASES") -> str:
        """A slash command as Slack sends it: what was typed in `text`, with `&`, `<` and `>`
        as entities (Slack escapes them in what people type)."""
        n = next(_trigger)
        text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        return urlencode(
            {
                "token": "legacy-verification-token",
                "team_id": "T0TEST",
                "team_domain": "test",
                "channel_id": channel,
                "channel_name": "releases",
                "user_id": user,
                "user_name": user.lower(),
                "command": "/promote",
                "text": text,
                "api_app_id": "A0PROMOTE",
                "response_url": f"{self.response_base}/response/cmd{n}",
                "trigger_id": trigger_id(n),
            }
        )

    def click_body(
        self,
        action_id: str,
        value: str,
        user: str,
        channel: str = "CRELEASES",
        ts: str = "1",
        *,
        bot_id: str | None = "BPROMOTEBOT",
        team: str | None = "T0TEST",
        app: str | None = "A0PROMOTE",
        thread_ts: str | None = None,
        issued: float | None = None,
        blocks: list[dict] | None = None,
    ) -> str:
        """A block_actions payload; `issued`: when the click happened (for a late trigger);
        `blocks`: the clicked message's, as Slack sends them."""
        n = next(_trigger)
        payload = {
            "type": "block_actions",
            "user": {"id": user, "username": user.lower(), "team_id": team},
            "api_app_id": app,
            "token": "legacy-verification-token",
            "container": {"type": "message", "message_ts": ts, "channel_id": channel},
            "trigger_id": trigger_id(n, issued),
            "team": {"id": team, "domain": "test"},
            "channel": {"id": channel, "name": "releases"},
            "message": {
                "type": "message",
                "ts": ts,
                "text": "release",
                "bot_id": bot_id,
                **({"thread_ts": thread_ts} if thread_ts else {}),
                **({"blocks": blocks} if blocks is not None else {}),
            },
            "response_url": f"{self.response_base}/response/click{n}",
            "actions": [
                {
                    "type": "button",
                    "action_id": action_id,
                    "block_id": f"request_{value}",
                    "value": value,
                    "action_ts": f"{time.time():.6f}",
                }
            ],
        }
        return urlencode({"payload": json.dumps(payload)})

    def event_body(self, event: dict) -> str:
        """An Events API callback around `event`, as JSON (how Slack sends events)."""
        n = next(_trigger)
        return json.dumps(
            {
                "token": "legacy-verification-token",
                "team_id": "T0TEST",
                "api_app_id": "A0PROMOTE",
                "event": event,
                "type": "event_callback",
                "event_id": f"Ev{n:08d}{_RUN}",
                "event_time": int(time.time()),
            }
        )

    async def event(self, event: dict) -> httpx.Response:
        body = self.event_body(event)
        headers = {**self.signed_headers(body), "Content-Type": "application/json"}
        return await self.post(body, headers)

    async def home_opened(self, user: str) -> httpx.Response:
        """`app_home_opened` for the Home tab, as Slack sends it when `user` opens the app."""
        return await self.event(
            {
                "type": "app_home_opened",
                "user": user,
                "channel": f"D{user[1:]}",
                "tab": "home",
                "event_ts": f"{time.time():.6f}",
            }
        )

    async def command(self, text: str, user: str, channel: str = "CRELEASES") -> httpx.Response:
        return await self.post(self.command_body(text, user, channel))

    def submission_body(
        self,
        view: dict,
        user: str,
        text: str | None,
        *,
        team: str | None = "T0TEST",
        app: str | None = "A0PROMOTE",
        private_metadata: str | None = None,
    ) -> str:
        """A view_submission of `view` (as views.open answered it) by `user`, with `text` typed
        into its first input (None: left empty); `private_metadata` overrides the view's."""
        n = next(_trigger)
        values = {}
        for block in view.get("blocks", []):
            if block.get("type") == "input":
                element = block["element"]
                values[block["block_id"]] = {
                    element["action_id"]: {"type": element["type"], "value": text}
                }
                break
        submitted = {
            **view,
            "team_id": team,
            "app_id": app,
            "state": {"values": values},
            "root_view_id": view.get("id"),
            "previous_view_id": None,
            "app_installed_team_id": team,
        }
        if private_metadata is not None:
            submitted["private_metadata"] = private_metadata
        payload = {
            "type": "view_submission",
            "team": {"id": team, "domain": "test"} if team else None,
            "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": team},
            "api_app_id": app,
            "token": "legacy-verification-token",
            "trigger_id": trigger_id(n),
            "view": submitted,
            "response_urls": [],
            "is_enterprise_install": False,
            "enterprise": None,
        }
        return urlencode({"payload": json.dumps(payload)})

    async def submit(
        self, view: dict, user: str, text: str | None, **how: str | None
    ) -> httpx.Response:
        """Submit the modal `view` (as views.open answered it) as `user` typing `text`."""
        return await self.post(self.submission_body(view, user, text, **how))  # type: ignore[arg-type]

    async def close(self, view: dict, user: str) -> httpx.Response:
        """Close the modal `view` with its Cancel button (Slack sends view_closed)."""
        payload = {
            "type": "view_closed",
            "team": {"id": "T0TEST", "domain": "test"},
            "user": {"id": user, "username": user.lower(), "team_id": "T0TEST"},
            "api_app_id": "A0PROMOTE",
            "token": "legacy-verification-token",
            "view": view,
            "is_cleared": False,
        }
        return await self.post(urlencode({"payload": json.dumps(payload)}))

    async def click(
        self, action_id: str, request_id: int | str, user: str, **where: Any
    ) -> httpx.Response:
        """Click a button of request `request_id`'s release message, as the fake Slack shows
        it (its channel, ts and blocks); `where` overrides them (channel, ts, bot_id, team,
        app, thread_ts, issued, blocks). Given a `ts`, the click carries the blocks of the
        message the fake shows there, as Slack's payload would."""
        if "ts" not in where:
            found = await self._fake(f"release/{request_id}")
        else:
            channel = where.get("channel") or "CRELEASES"
            shown = await self._fake(f"message/{channel}/{where['ts']}")
            found = {"blocks": shown["blocks"]} if shown.get("blocks") is not None else {}
        args = {**found, **where}
        return await self.post(self.click_body(action_id, str(request_id), user, **args))  # type: ignore[arg-type]

    async def _fake(self, path: str) -> dict[str, Any]:
        try:
            response = await self.http.get(f"{self.response_base}/_fake/{path}")
        except httpx.HTTPError:
            return {}
        return response.json() if response.status_code == 200 else {}
