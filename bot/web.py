"""Run an aiohttp application on a host and port (port 0: the OS picks one)."""

from __future__ import annotations

import asyncio
import re

from aiohttp import web

LISTENING = "listening on http://{host}:{port}{path}"  # what `serve` logs once it accepts
_LISTENING = re.compile(r"listening on http://[^:/]+:(\d+)/")


async def listening_port(output: asyncio.StreamReader) -> int:
    """Read a server process's output until it logs where it listens; return the port."""
    while line := (await output.readline()).decode():
        if match := _LISTENING.search(line):
            return int(match.group(1))
    raise RuntimeError("the process ended before it was listening")


class WebServer:
    """`async with WebServer(app) as server:` serves `app` at `server.url`."""

    def __init__(self, app: web.Application, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> WebServer:
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> WebServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
