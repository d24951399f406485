"""The shared provider HTTP policy. httpx's MockTransport stands in for the network here;
the provider tests run the same code against fake servers over real HTTP."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from pydantic import BaseModel, ValidationError

from bot.core.errors import (
    ProviderAuthError,
    ProviderNotFound,
    ProviderRateLimited,
    ProviderServerError,
    ProviderTimeout,
    ProviderUncertain,
    ProviderUnreachable,
)
from bot.providers.http import (
    ProviderHTTP,
    RetryPolicy,
    retry_after_seconds,
    segment,
    unreadable,
)


class Recorder:
    def __init__(self, answers: list[httpx.Response | Exception]) -> None:
        self.answers = answers
        self.requests: list[httpx.Request] = []
        self.sleeps: list[float] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


def _client(recorder: Recorder) -> ProviderHTTP:
    return ProviderHTTP(
        "Acme",
        "https://acme.test/api",
        credential="ACME_TOKEN",
        scope="acme:write",
        error_detail=lambda r: r.json().get("message"),
        transport=httpx.MockTransport(recorder.handler),
        retry=RetryPolicy(attempts=3, max_retry_after=30),
        sleep=recorder.sleep,
    )


def _json(status: int, body: object = None, **headers: str) -> httpx.Response:
    return httpx.Response(status, json=body if body is not None else {}, headers=headers)


async def test_reads_retry_5xx_with_backoff() -> None:
    rec = Recorder([_json(503), _json(502), _json(200, {"ok": True})])
    response = await _client(rec).call("GET", "things/1", idempotent=True)
    assert response.json() == {"ok": True}
    assert len(rec.requests) == 3 and len(rec.sleeps) == 2
    assert str(rec.requests[0].url) == "https://acme.test/api/things/1"


async def test_writes_are_not_retried_after_5xx_and_the_fate_is_unknown() -> None:
    rec = Recorder([_json(500, {"message": "boom"})])
    with pytest.raises(ProviderServerError) as caught:
        await _client(rec).call("POST", "things/1/promote", idempotent=False)
    assert caught.value.fate == "unknown" and "boom" in caught.value.message
    assert len(rec.requests) == 1


async def test_429_is_retried_honouring_retry_after_with_a_cap() -> None:
    rec = Recorder(
        [_json(429, **{"Retry-After": "2"}), _json(429, **{"Retry-After": "900"}), _json(200)]
    )
    await _client(rec).call("POST", "x", idempotent=False)
    assert rec.sleeps == [2.0, 30.0]


async def test_429_for_ever_is_rate_limited() -> None:
    rec = Recorder([_json(429), _json(429), _json(429)])
    with pytest.raises(ProviderRateLimited, match="rate-limiting"):
        await _client(rec).call("GET", "x", idempotent=True)


async def test_connection_refused_is_retried_and_then_certainly_failed() -> None:
    refused = httpx.ConnectError("connection refused")
    rec = Recorder([refused, refused, refused])
    with pytest.raises(ProviderUnreachable) as caught:
        await _client(rec).call("POST", "x", idempotent=False)
    assert caught.value.fate == "failed" and len(rec.requests) == 3


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (httpx.ReadTimeout("slow"), ProviderTimeout),
        (httpx.RemoteProtocolError("dropped"), ProviderUncertain),
    ],
)
async def test_a_write_whose_fate_is_unclear_is_never_retried(
    error: Exception, kind: type[Exception]
) -> None:
    rec = Recorder([error, _json(200)])
    with pytest.raises(kind) as caught:
        await _client(rec).call("POST", "x", idempotent=False)
    assert caught.value.fate == "unknown"  # type: ignore[attr-defined]
    assert len(rec.requests) == 1


async def test_a_read_timeout_is_retried() -> None:
    rec = Recorder([httpx.ReadTimeout("slow"), _json(200)])
    await _client(rec).call("GET", "x", idempotent=True)
    assert len(rec.requests) == 2


@pytest.mark.parametrize(
    ("status", "kind", "words"),
    [
        (401, ProviderAuthError, "Acme rejected the bot's credentials (ACME_TOKEN)"),
        (403, ProviderAuthError, "credentials (ACME_TOKEN) lack the `acme:write` scope"),
        (404, ProviderNotFound, "Acme found nothing there"),
    ],
)
async def test_status_to_error(status: int, kind: type[Exception], words: str) -> None:
    rec = Recorder([_json(status, {"message": "their words"})])
    with pytest.raises(kind) as caught:
        await _client(rec).call("POST", "x", idempotent=False)
    assert str(caught.value).endswith(f"{words} (HTTP {status}: their words)")


async def test_explain_gives_a_call_its_own_words_and_odd_bodies_are_survived() -> None:
    rec = Recorder([httpx.Response(404, text="<html>not json</html>")])
    with pytest.raises(ProviderNotFound) as caught:
        await _client(rec).call("GET", "x", idempotent=True, explain={404: "no such build"})
    assert str(caught.value) == "no such build (HTTP 404)"


def test_retry_after_forms() -> None:
    now = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds("Sun, 22 Nov 2026 12:00:10 GMT", now) == 10.0
    assert retry_after_seconds("Sun, 22 Nov 2026 11:00:00 GMT", now) == 0.0
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None


def test_backoff_is_bounded_and_jittered() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=8.0)
    delays = [policy.delay(attempt) for attempt in range(1, 10) for _ in range(20)]
    assert all(0.25 <= d <= 8.0 for d in delays)
    assert len(set(delays)) > 1


@pytest.mark.parametrize(
    ("value", "quoted"),
    [("abc_1", "abc_1"), ("../x", "..%2Fx"), ("a%2Fb", "a%252Fb"), ("a b", "a%20b")],
)
def test_segment_cannot_escape_its_place(value: str, quoted: str) -> None:
    assert segment(value) == quoted


def test_an_unreadable_body_is_described_by_its_fields_never_its_values() -> None:
    class Resource(BaseModel):
        id: str
        version: int

    echoed = "sk_live_0123456789abcdef"  # a body echoing a credential the bot sent
    try:
        Resource.model_validate({"version": echoed, "extra": echoed})
    except ValidationError as exc:
        text = unreadable(exc)
    assert echoed not in text
    assert "id: Field required" in text and "version: Input should be a valid integer" in text
    assert unreadable(ValueError("Expecting value: line 1 column 1 (char 0)")).startswith("Expect")
    assert unreadable(KeyError(echoed)) == "KeyError"


async def test_a_client_that_cannot_set_up_https_sends_nothing_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The HTTP client is made at the first call: a CA bundle that can't be read is then a
    plain "not sent" naming SSL_CERT_FILE (a write is certainly not done), not a crash."""
    bundle = tmp_path / "ca.pem"
    bundle.write_text("not a certificate")
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    client = ProviderHTTP(
        "Acme", "https://acme.test/api", credential="T", scope="x", error_detail=lambda r: None
    )
    with pytest.raises(ProviderUnreachable) as caught:
        await client.call("POST", "x", idempotent=False)
    assert caught.value.fate == "failed" and "SSL_CERT_FILE" in caught.value.message
    await client.aclose()
