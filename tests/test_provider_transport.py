"""The providers' transport (bot/providers/transport.py) against a raw TCP server that fails
the way networks do: an error says truthfully whether the request may have landed, and a
write goes out once, whatever the connection does."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import aiohttp
import httpx
import pytest

from bot.core.errors import ProviderTimeout, ProviderUncertain, ProviderUnreachable
from bot.providers.http import ProviderHTTP, RetryPolicy
from bot.providers.transport import as_httpx_error

OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"

Answer = Callable[[bytes, asyncio.StreamWriter], Awaitable[bool]]


class Server:
    """Reads each request (head and body) on every connection and hands it to `answer`,
    which writes what it likes and says whether the connection stays open."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.requests: list[bytes] = []
        self.connections = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                if not await self.answer(request, writer):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def sent(self, method: str) -> int:
        return sum(r.startswith(method.encode() + b" ") for r in self.requests)


def provider(base_url: str, authorization: str = "Bearer acme-secret") -> ProviderHTTP:
    """The shared HTTP policy as the providers use it, with the transport they use."""

    async def no_sleep(seconds: float) -> None:
        pass

    return ProviderHTTP(
        "Acme",
        base_url,
        credential="ACME_TOKEN",
        scope="acme:write",
        error_detail=lambda r: None,
        headers={"Authorization": authorization},
        timeout=httpx.Timeout(1.0, connect=1.0),
        retry=RetryPolicy(attempts=3),
        sleep=no_sleep,
    )


@asynccontextmanager
async def serving(answer: Answer) -> AsyncIterator[tuple[Server, ProviderHTTP]]:
    server = Server(answer)
    listening = await asyncio.start_server(server.serve, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    client = provider(f"http://127.0.0.1:{port}/api")
    try:
        yield server, client
    finally:
        await client.aclose()
        listening.close()
        await listening.wait_closed()


async def hang_up(request: bytes, writer: asyncio.StreamWriter) -> bool:
    return False  # the request arrived; no answer, the connection closed


async def test_a_write_whose_connection_closes_before_the_answer_may_have_landed() -> None:
    async with serving(hang_up) as (server, client):
        with pytest.raises(ProviderUncertain) as caught:
            await client.call("POST", "things/1/promote", idempotent=False, json={"a": 1})
    assert caught.value.fate == "unknown" and "dropped before it answered" in caught.value.message
    assert server.sent("POST") == 1  # never sent again
    assert b'{"a":1}' in server.requests[0] or b'{"a": 1}' in server.requests[0]


async def test_a_read_whose_connection_closes_is_asked_again() -> None:
    async with serving(hang_up) as (server, client):
        with pytest.raises(ProviderUncertain):
            await client.call("GET", "things/1", idempotent=True)
    assert server.sent("GET") == 3  # the policy's three attempts, no more, no fewer


async def test_a_body_cut_short_may_have_landed() -> None:
    async def cut(request: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"id":')
        await writer.drain()
        return False

    async with serving(cut) as (server, client):
        with pytest.raises(ProviderUncertain) as caught:
            await client.call("POST", "things/1/promote", idempotent=False)
    assert caught.value.fate == "unknown"
    assert server.sent("POST") == 1


async def test_a_delete_on_a_kept_connection_that_drops_is_sent_once() -> None:
    """aiohttp sends a PUT or DELETE again on a new connection when a kept one drops under
    it; a write must go out once, whether it landed is for the journal to read."""

    async def first_then_drop(request: bytes, writer: asyncio.StreamWriter) -> bool:
        if request.startswith(b"GET "):
            writer.write(OK)
            await writer.drain()
            return True  # kept for the next request
        return False

    async with serving(first_then_drop) as (server, client):
        await client.call("GET", "things/1", idempotent=True)
        with pytest.raises(ProviderUncertain):
            await client.call("DELETE", "things/1/tester", idempotent=False)
    assert server.sent("DELETE") == 1
    assert server.connections == 1  # the DELETE went out on the kept connection


async def test_no_answer_within_the_timeout_may_have_landed() -> None:
    async def silent(request: bytes, writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(3)
        return False

    async with serving(silent) as (server, client):
        with pytest.raises(ProviderTimeout) as caught:
            await client.call("POST", "things/1/promote", idempotent=False)
    assert caught.value.fate == "unknown" and "within 1 s" in caught.value.message
    assert server.sent("POST") == 1


async def test_a_refused_connection_was_never_sent() -> None:
    listening = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    listening.close()
    await listening.wait_closed()
    client = provider(f"http://127.0.0.1:{port}")
    with pytest.raises(ProviderUnreachable) as caught:
        await client.call("POST", "things/1/promote", idempotent=False)
    assert caught.value.fate == "failed"
    await client.aclose()


async def test_kept_connections_are_reused_and_cookies_sent_once() -> None:
    async def with_cookie(request: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(OK.replace(b"\r\n\r\n", b"\r\nSet-Cookie: s=1; Path=/\r\n\r\n", 1))
        await writer.drain()
        return True

    async with serving(with_cookie) as (server, client):
        for _ in range(3):
            assert (await client.call("GET", "things/1", idempotent=True)).json() == {}
    assert server.connections == 1
    later = server.requests[-1].lower()
    assert later.count(b"\r\ncookie:") == 1 and b"s=1" in later
    assert b"authorization: bearer acme-secret" in later


async def test_user_and_password_of_the_url_are_not_sent() -> None:
    async def ok(request: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(OK)
        await writer.drain()
        return True

    async with serving(ok) as (server, client):
        url = str(client.client.base_url).replace("http://", "http://ops:hunter2@")
        other = provider(url)
        await other.call("GET", "things/1", idempotent=True)
        await other.aclose()
    assert b"hunter2" not in server.requests[0]
    assert server.requests[0].startswith(b"GET /api/things/1 HTTP/1.1\r\n")


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (aiohttp.ConnectionTimeoutError("connect"), httpx.ConnectTimeout),
        (aiohttp.SocketTimeoutError("read"), httpx.ReadTimeout),
        (aiohttp.ServerTimeoutError("read"), httpx.ReadTimeout),
        (aiohttp.ServerDisconnectedError(), httpx.RemoteProtocolError),
        (aiohttp.ClientPayloadError("cut"), httpx.ReadError),
        (aiohttp.ClientOSError(104, "Connection reset by peer"), httpx.ReadError),
        (aiohttp.InvalidURL("nope"), httpx.UnsupportedProtocol),
        (aiohttp.ClientError("other"), httpx.RemoteProtocolError),
    ],
)
def test_only_errors_before_sending_say_not_sent(error: Exception, expected: type) -> None:
    mapped = as_httpx_error(error)
    assert type(mapped) is expected and str(mapped)
    # what http.py reads as "never sent": a connect error or a connect timeout only
    never_sent = isinstance(mapped, httpx.ConnectError | httpx.ConnectTimeout)
    assert never_sent == isinstance(error, aiohttp.ConnectionTimeoutError)
