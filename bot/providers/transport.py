"""The providers' HTTP transport: httpx's client API (base URL, auth, timeouts, the errors
bot/providers/http.py turns into plain words) sending through aiohttp's connection pool, the
one the bot already keeps for Slack.

Why not httpcore's own pool: it looks at every connection it holds, twice per request (on
the way in and on release), and probes each idle socket with two system calls; aiohttp learns
that a kept connection closed from the event loop, at no cost per request. Measured on the
bench's promotions: 9.3 ms of the bot's CPU per full promotion instead of 16-19 ms.

What this module adds to httpx-aiohttp's transport is the one thing exactly-once depends on:
an error says truthfully whether the request may have reached the provider. httpx-aiohttp
maps every connection error, a connection dropped after the request went out included, to
`httpx.ConnectTimeout` ("never sent"), which would let a write be sent again. Here only the
errors aiohttp raises before anything is written say "not sent"; and aiohttp's own resend of
a PUT or DELETE on a kept connection that dropped is turned off: a write goes out once.

Two things httpx's own transport does that an explicit transport would lose are kept: the
proxy the environment names (HTTPS_PROXY and the rest, as httpx reads them), and a bound on a
request the provider stops reading (aiohttp has no write timeout of its own)."""

from __future__ import annotations

import asyncio
import base64
import urllib.request
from collections.abc import AsyncIterator

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

__all__ = ["ProviderTransport", "as_httpx_error", "proxy_from_environment"]


def as_httpx_error(exc: BaseException) -> httpx.TransportError:
    """The httpx error that tells as much as `exc` (an aiohttp error) does about whether the
    request went out. Connect errors (DNS, refused, TLS handshake, no connection within the
    connect or pool timeout) and a proxy's refusal to open a tunnel are raised before a byte
    of the request is written: httpx's ConnectError, ConnectTimeout and ProxyError, which the
    caller may retry. Everything after that may have landed."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(text)
    if isinstance(exc, aiohttp.ClientConnectorError):  # its TLS and DNS errors too
        return httpx.ConnectError(text)
    if isinstance(exc, aiohttp.ClientHttpProxyError):  # the proxy refused the tunnel
        return httpx.ProxyError(text)
    if isinstance(exc, aiohttp.InvalidURL | aiohttp.NonHttpUrlClientError):
        return httpx.UnsupportedProtocol(text)
    if isinstance(exc, aiohttp.ServerTimeoutError):  # no answer within the read timeout
        return httpx.ReadTimeout(text)
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return httpx.RemoteProtocolError(text)
    if isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ClientOSError):
        return httpx.ReadError(text)
    return httpx.RemoteProtocolError(text)


def proxy_from_environment(url: httpx.URL) -> httpx.Proxy | None:
    """The proxy the environment names for `url`, as httpx's own transport would take it:
    HTTPS_PROXY or HTTP_PROXY by the URL's scheme, else ALL_PROXY (lower-case names first),
    none for a host NO_PROXY lists; read through urllib, as httpx reads them. A proxy of a
    scheme aiohttp can't use (SOCKS) raises ValueError, in words that leave out its URL (it
    may hold a password)."""
    proxies = urllib.request.getproxies()
    named = proxies.get(url.scheme) or proxies.get("all")
    if not named:
        return None
    host = url.host if url.port is None else f"{url.host}:{url.port}"
    if urllib.request.proxy_bypass_environment(host, proxies):
        return None
    if "://" not in named:
        named = f"http://{named}"  # "proxy:3128", as httpx takes it
    scheme = named.split("://", 1)[0].lower()
    if scheme not in ("http", "https"):
        raise ValueError(
            f"the environment names a {scheme}:// proxy for {url.scheme}:// and only http:// "
            "and https:// proxies are supported"
        )
    proxy = httpx.Proxy(named)  # a user and password in the URL become its auth
    if proxy.auth is None:
        return proxy
    # handed to aiohttp as a header: its proxy_auth argument is deprecated
    token = base64.b64encode(":".join(proxy.auth).encode()).decode()
    return httpx.Proxy(proxy.url, headers={"Proxy-Authorization": f"Basic {token}"})


def _answer_within(request: httpx.Request) -> float | None:
    """How long a request may take until its answer starts: the pool, write and read timeouts
    end to end. aiohttp bounds getting a connection (the pool timeout) and each read, but not
    the write: without this, a provider that stops reading the request would hold the call
    for ever. None where a phase has no timeout of its own."""
    timeout = request.extensions.get("timeout", {})
    phases = [timeout.get("pool"), timeout.get("write"), timeout.get("read")]
    if any(phase is None for phase in phases):
        return None
    return sum(phases)


def _cause(exc: BaseException) -> BaseException:
    """The aiohttp error behind what httpx-aiohttp raised (it raises its own mapping from it)."""
    if isinstance(exc, httpx.TransportError) and exc.__cause__ is not None:
        return exc.__cause__
    return exc


class _Body(httpx.AsyncByteStream):
    """A response body whose read errors say "may have landed": the request went out."""

    def __init__(self, stream: httpx.AsyncByteStream) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._stream:
                yield chunk
        except (httpx.TransportError, aiohttp.ClientError) as exc:
            cause = _cause(exc)
            raise as_httpx_error(cause) from cause

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        except (httpx.TransportError, aiohttp.ClientError) as exc:
            cause = _cause(exc)
            raise as_httpx_error(cause) from cause


class ProviderTransport(AiohttpTransport):
    """httpx-aiohttp's transport with truthful errors, aiohttp's resend of PUT and DELETE off,
    and no cookie jar of aiohttp's own (httpx keeps the client's cookies, and sends them).
    Its SSL context honours SSL_CERT_FILE and SSL_CERT_DIR, as httpx's does; `proxy` is the
    one to send through (`proxy_from_environment`), None to connect directly."""

    def __init__(self, limits: httpx.Limits, proxy: httpx.Proxy | None = None) -> None:
        super().__init__(limits=limits, proxy=proxy)

    def get_client(self) -> aiohttp.ClientSession:
        limits = self.limits
        connector = aiohttp.TCPConnector(
            limit=limits.max_connections or 0,  # 0: no limit, as httpx's None
            ssl=self.ssl_context,
            **(
                {}
                if limits.keepalive_expiry is None
                else {"keepalive_timeout": limits.keepalive_expiry}
            ),
        )
        session = aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())
        # A kept connection that drops as a PUT or DELETE goes out: aiohttp would send the
        # request again on a new one (as its own test client turns off, with this attribute).
        # A write is sent once; whether it landed is for the caller to read.
        session._retry_connection = False
        return session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.userinfo:
            # httpx has already made them the request's Authorization (its auth flow runs
            # before the transport); aiohttp would refuse them beside that header.
            request.url = request.url.copy_with(userinfo=b"")
        if self.proxy is not None and request.url.scheme == "http":
            # aiohttp puts the proxy's headers on a CONNECT only (https://); a plain http://
            # request goes to the proxy whole and carries them itself, as httpx's would
            request.headers.update(self.proxy.headers)
        try:
            async with asyncio.timeout(_answer_within(request)):
                response = await super().handle_async_request(request)
        except (httpx.TransportError, aiohttp.ClientError) as exc:
            cause = _cause(exc)
            raise as_httpx_error(cause) from cause
        except TimeoutError as exc:  # the bound above, or the socket's while writing
            raise httpx.WriteTimeout("the provider stopped reading the request") from exc
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _Body(response.stream)
        return response
