"""The providers' transport (bot/providers/transport.py) against a raw TCP server that fails
the way networks do: an error says truthfully whether the request may have landed, and a
write goes out once, whatever the connection does."""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import aiohttp
import httpx
import multidict
import pytest
import yarl

from bot.core.errors import ProviderTimeout, ProviderUncertain, ProviderUnreachable
from bot.providers.http import ProviderHTTP, RetryPolicy
from bot.providers.transport import as_httpx_error, proxy_from_environment

OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"

Answer = Callable[[bytes, asyncio.StreamWriter], Awaitable[bool]]


class Server:
    """Reads each request (head and body) on every connection and hands it to `answer`,
    which writes what it likes and says whether the connection stays open."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.requests: list[bytes] = []
        self.connections = 0
        self.port = 0

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
    server.port = port
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


async def ok(request: bytes, writer: asyncio.StreamWriter) -> bool:
    writer.write(OK)
    await writer.drain()
    return True


def authorization_of(request: bytes) -> list[bytes]:
    lines = request.lower().split(b"\r\n")
    return [line for line in lines if line.startswith(b"authorization:")]


async def test_user_and_password_of_the_url_are_sent_as_httpx_sends_them() -> None:
    """httpx turns a URL's user and password into Basic auth before any transport sees the
    request; aiohttp must not be handed them again (it refuses them beside that header)."""
    async with serving(ok) as (server, client):
        url = str(client.client.base_url).replace("http://", "http://ops:hunter2@")
        for transport in (None, httpx.AsyncHTTPTransport()):  # ours, then httpx's own
            other = provider(url)
            other._client_options["transport"] = transport
            await other.call("GET", "things/1", idempotent=True)
            await other.aclose()
    ours, httpx_own = server.requests
    assert ours.startswith(b"GET /api/things/1 HTTP/1.1\r\n")
    assert httpx_own.startswith(b"GET /api/things/1 HTTP/1.1\r\n")
    assert authorization_of(ours) == authorization_of(httpx_own)
    assert authorization_of(ours) == [
        b"authorization: basic " + base64.b64encode(b"ops:hunter2").lower()
    ]


async def test_a_request_the_provider_stops_reading_is_given_up_and_may_have_landed() -> None:
    """aiohttp has no write timeout: a provider that stops reading a large body would hold the
    call for ever. The transport bounds it (pool + write + read: 3 s here)."""

    async def reads_nothing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(30)
        writer.close()

    listening = await asyncio.start_server(reads_nothing, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    client = provider(f"http://127.0.0.1:{port}/api")
    try:
        with pytest.raises(ProviderTimeout) as caught:
            blob = {"bundle": "x" * (32 << 20)}  # more than the sockets' buffers hold
            await asyncio.wait_for(
                client.call("POST", "things/1/promote", idempotent=False, json=blob), 20
            )
    finally:
        await client.aclose()
        listening.close()
    assert caught.value.fate == "unknown"
    assert "stopped reading the request" in caught.value.message


async def test_a_call_cancelled_mid_answer_lets_its_connection_go() -> None:
    closed = asyncio.Event()
    started = asyncio.Event()

    async def half_then_wait(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"id":')
        await writer.drain()
        started.set()
        await reader.read()  # until the bot's side closes the connection
        closed.set()
        writer.close()

    listening = await asyncio.start_server(half_then_wait, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    client = provider(f"http://127.0.0.1:{port}/api")
    call = asyncio.create_task(client.call("GET", "things/1", idempotent=True))
    await asyncio.wait_for(started.wait(), 5)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    await asyncio.wait_for(closed.wait(), 5)  # closed at once, not kept half read in the pool
    await client.aclose()
    listening.close()


@pytest.fixture
def environment_without_proxies(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)
    return monkeypatch


async def test_the_proxy_the_environment_names_is_gone_through(
    environment_without_proxies: pytest.MonkeyPatch,
) -> None:
    async with serving(ok) as (proxy, _):
        port = proxy.port
        environment_without_proxies.setenv("HTTP_PROXY", f"http://ops:hunter2@127.0.0.1:{port}")
        client = provider("http://znyx.invalid/api")
        assert (await client.call("GET", "things/1", idempotent=True)).json() == {}
        await client.aclose()
    (request,) = proxy.requests
    assert request.startswith(b"GET http://znyx.invalid/api/things/1 HTTP/1.1\r\n")
    lines = request.lower().split(b"\r\n")
    assert b"proxy-authorization: basic " + base64.b64encode(b"ops:hunter2").lower() in lines
    assert b"authorization: bearer acme-secret" in lines


async def test_a_tunnel_the_proxy_refuses_was_never_sent(
    environment_without_proxies: pytest.MonkeyPatch,
) -> None:
    async def refuse(request: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        return False

    async with serving(refuse) as (proxy, _):
        environment_without_proxies.setenv("HTTPS_PROXY", f"ops:hunter2@127.0.0.1:{proxy.port}")
        client = provider("https://znyx.invalid/api")
        with pytest.raises(ProviderUnreachable) as caught:
            await client.call("POST", "things/1/promote", idempotent=False, json={"a": 1})
        await client.aclose()
    assert caught.value.fate == "failed" and "407" in caught.value.message
    assert "hunter2" not in caught.value.message
    assert all(r.startswith(b"CONNECT znyx.invalid:443 HTTP/1.1\r\n") for r in proxy.requests)
    assert len(proxy.requests) == 3  # refused before anything went out: tried again
    basic = b"proxy-authorization: basic " + base64.b64encode(b"ops:hunter2").lower()
    assert basic in proxy.requests[0].lower().split(b"\r\n")


async def test_a_host_no_proxy_lists_is_reached_directly(
    environment_without_proxies: pytest.MonkeyPatch,
) -> None:
    environment_without_proxies.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing there
    environment_without_proxies.setenv("NO_PROXY", "example.org,127.0.0.1")
    async with serving(ok) as (server, client):
        assert (await client.call("GET", "things/1", idempotent=True)).json() == {}
    assert server.requests[0].startswith(b"GET /api/things/1 HTTP/1.1\r\n")


async def test_a_proxy_aiohttp_cannot_use_is_said_and_nothing_is_sent(
    environment_without_proxies: pytest.MonkeyPatch,
) -> None:
    environment_without_proxies.setenv("ALL_PROXY", "socks5://ops:hunter2@127.0.0.1:1080")
    client = provider("https://znyx.invalid/api")
    with pytest.raises(ProviderUnreachable) as caught:
        await client.call("POST", "things/1/promote", idempotent=False)
    assert caught.value.fate == "failed"
    assert "socks5:// proxy" in caught.value.message and "hunter2" not in caught.value.message
    await client.aclose()


@pytest.mark.parametrize(
    ("environment", "url", "expected"),
    [
        ({}, "https://api.znyx.example/v1", None),
        ({"HTTPS_PROXY": "proxy:3128"}, "https://api.znyx.example/v1", "http://proxy:3128"),
        ({"HTTPS_PROXY": "http://proxy:3128"}, "http://api.znyx.example/v1", None),
        (
            {"https_proxy": "http://low:1", "HTTPS_PROXY": "http://up:2"},
            "https://a.b/",
            "http://low:1",
        ),
        ({"ALL_PROXY": "http://all:1"}, "http://api.znyx.example/v1", "http://all:1"),
        (
            {"HTTPS_PROXY": "http://p:1", "NO_PROXY": ".znyx.example"},
            "https://api.znyx.example/",
            None,
        ),
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "*"}, "https://a.b/", None),
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "other.example"}, "https://a.b/", "http://p:1"),
    ],
)
def test_the_proxy_for_a_url_is_read_as_httpx_reads_it(
    environment_without_proxies: pytest.MonkeyPatch,
    environment: dict[str, str],
    url: str,
    expected: str | None,
) -> None:
    for name, value in environment.items():
        environment_without_proxies.setenv(name, value)
    proxy = proxy_from_environment(httpx.URL(url))
    assert (None if proxy is None else str(proxy.url)) == expected


TUNNEL = aiohttp.RequestInfo(
    yarl.URL("http://proxy:3128"), "CONNECT", multidict.CIMultiDictProxy(multidict.CIMultiDict())
)


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
        (aiohttp.ClientHttpProxyError(TUNNEL, (), status=407), httpx.ProxyError),
        (aiohttp.ClientError("other"), httpx.RemoteProtocolError),
    ],
)
def test_only_errors_before_sending_say_not_sent(error: Exception, expected: type) -> None:
    mapped = as_httpx_error(error)
    assert type(mapped) is expected and str(mapped)
    # what http.py reads as "never sent": a connect error, a connect timeout, a refused tunnel
    never_sent = isinstance(mapped, httpx.ConnectError | httpx.ConnectTimeout | httpx.ProxyError)
    before = aiohttp.ConnectionTimeoutError | aiohttp.ClientHttpProxyError
    assert never_sent == isinstance(error, before)
