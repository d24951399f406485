"""Outgoing events over HTTP: one POST per try, to a `[[notify]]` receiver (bot/core/outbox.py
decides what and when; this only carries it and says what the receiver answered)."""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from bot import __version__
from bot.core.ports import Sent
from bot.providers.http import retry_after_seconds

TIMEOUT = httpx.Timeout(10.0, connect=5.0)
USER_AGENT = f"promote-bot/{__version__} (CDEvents)"


class HttpEventSender:
    """POSTs events with one long-lived client; never follows a redirect (a receiver's URL
    is exactly the one configured), never retries by itself (the outbox does, with backoff)."""

    def __init__(self, client: httpx.AsyncClient | None = None) -> None:
        self._client = client
        self._own = client is None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=TIMEOUT, follow_redirects=False)
        return self._client

    async def send(self, url: str, body: bytes, headers: Mapping[str, str]) -> Sent:
        try:
            response = await self._http().post(
                url, content=body, headers={"User-Agent": USER_AGENT, **headers}
            )
        except httpx.TimeoutException:
            return Sent(ok=False, why="no answer within 10 s")
        except httpx.HTTPError as exc:  # refused, reset, TLS, an SSL_CERT_FILE unreadable
            return Sent(ok=False, why=f"could not reach it ({type(exc).__name__})")
        except OSError as exc:
            return Sent(ok=False, why=f"could not reach it ({type(exc).__name__})")
        status = response.status_code
        if 200 <= status < 300:
            return Sent(ok=True)
        retry_after = retry_after_seconds(response.headers.get("Retry-After"))
        # 410 Gone: the receiver says it will never take events at this URL.
        return Sent(ok=False, why=f"HTTP {status}", gone=status == 410, retry_after=retry_after)

    async def aclose(self) -> None:
        if self._client is not None and self._own:
            await self._client.aclose()
        self._client = None
