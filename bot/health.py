"""`GET /healthz`, `GET /readyz` and `GET /metrics`, on `PORT` in HTTP and Socket Mode alike.

- /healthz: the process is alive and its event loop answers (200, always, even while stopping,
  and while the database is not answering: nothing here waits on it on the event loop).
- /readyz: 200 when the store takes a write and Slack is reachable (Socket Mode: the websocket
  is connected; HTTP: `auth.test` answered at start-up); 503 with the reason otherwise (also
  while start-up still waits for Slack to answer), and 503 while shutting down, so a load
  balancer or Kubernetes stops sending work here.
- /metrics: the Prometheus text format of this bot's own registry (bot/metrics.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Protocol

from aiohttp import web

from bot.metrics import CONTENT_TYPE, Metrics
from bot.store import call_store

log = logging.getLogger(__name__)

PATHS = ("/healthz", "/readyz", "/metrics")


class PingableStore(Protocol):
    def ping(self, at: datetime) -> None: ...


class Health:
    """What the endpoints answer from: the store, Slack's connection, and shutting down."""

    def __init__(
        self,
        store: PingableStore,
        metrics: Metrics,
        *,
        stopping: asyncio.Event | None = None,
        slack_connected: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.stopping = stopping or asyncio.Event()
        # None: HTTP mode, where Slack was reached at start-up (`auth.test`) or we'd not be here.
        self.slack_connected = slack_connected
        self.waiting: str | None = None  # what start-up still waits for (Slack's answer)

    def waiting_for(self, what: str) -> None:
        """Start-up is not done: /readyz says so, with `what` (the last failure)."""
        self.waiting = f"waiting for Slack: {what}"

    async def not_ready(self) -> str | None:
        """Why this process should get no work now; None when it should."""
        if self.stopping.is_set():
            return "shutting down"
        if self.waiting is not None:
            return self.waiting
        try:  # off the event loop for PostgreSQL: /healthz answers meanwhile
            await call_store(self.store, self.store.ping, datetime.now(UTC))
        except Exception as exc:  # StoreError in words; anything else is not ready either
            return f"the store does not take a write: {exc}"
        if self.slack_connected is not None and not await self.slack_connected():
            return "not connected to Slack (Socket Mode)"
        return None

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(self, request: web.Request) -> web.Response:
        reason = await self.not_ready()
        if reason is not None:
            return web.Response(status=503, text=f"not ready: {reason}\n")
        return web.Response(text="ready\n")

    async def metrics_page(self, request: web.Request) -> web.Response:
        await self.metrics.refresh()  # the database's figures: computed in a worker thread
        body = await call_store(self.store, self.metrics.render)  # reads the store
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    def add_routes(self, app: web.Application) -> web.Application:
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get("/metrics", self.metrics_page)
        return app

    def app(self) -> web.Application:
        """A small app of these endpoints alone (Socket Mode has no Bolt web server)."""
        return self.add_routes(web.Application())
