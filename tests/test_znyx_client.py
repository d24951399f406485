"""The Znyx client against the fake Znyx over real HTTP: every status per doc 003."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from bot.core.errors import (
    ProviderAuthError,
    ProviderRejected,
    ProviderServerError,
    ProviderTimeout,
    ProviderUnreachable,
)
from bot.core.steps import Steps
from bot.providers.znyx import ZnyxPromote, ZnyxProvider
from bot.sandbox.znyx import FakeZnyx
from bot.web import WebServer
from tests.conftest import ZNYX_TOKEN, seed_znyx

STAGING = ZnyxPromote(
    org_id="org-test", project="guardrails", project_id="proj-guardrails", source_env="staging"
)


@pytest.fixture
async def znyx() -> AsyncIterator[tuple[FakeZnyx, str]]:
    fake = FakeZnyx()
    seed_znyx(fake)
    async with WebServer(fake.app()) as server:
        yield fake, server.url


async def _no_sleep(_: float) -> None:
    return None


def _client(url: str, token: str = ZNYX_TOKEN, timeout: float = 5.0) -> ZnyxProvider:
    provider = ZnyxProvider.create(url, token, timeout=httpx.Timeout(timeout))
    provider.http.sleep = _no_sleep
    return provider


async def test_preview_and_promote(znyx: tuple[FakeZnyx, str]) -> None:
    fake, url = znyx
    client = _client(url)
    preview = await client.preview(STAGING)
    assert [(f.label, f.value) for f in preview.facts] == [
        ("Active in prod now", "v1 · sha256:000000000000"),
        (
            "Promoting",
            "staging v1 · sha256:555555555555 → becomes the active bundle of prod (a new version)",
        ),
    ]
    prod_before = fake.active("proj-guardrails", "prod")
    assert prod_before is not None
    assert preview.expect == {
        "source": "v1 · sha256:555555555555",
        "source_hash": "sha256:" + "5" * 64,
        "destination": "v1 · sha256:000000000000",
        "destination_id": prod_before.id,
        "destination_version": "1",
    }
    outcome = await client.execute(
        STAGING, promoted_by="slack:U1", expect=preview.expect, steps=Steps.in_memory()
    )
    assert outcome.state == "succeeded"
    assert outcome.headline == "guardrails bundle v2 is active in prod"
    prod = fake.active("proj-guardrails", "prod")
    assert prod is not None and prod.published_by == "slack:U1"
    assert {f.label: f.value for f in outcome.facts}["Bundle"] == prod.id
    again = await client.preview(STAGING)  # the same policies would only make a new version
    assert again.refusal is not None and "prod already runs this policy hash" in again.refusal
    replay = await client.execute(
        STAGING, promoted_by="slack:U1", expect=preview.expect, steps=Steps.in_memory()
    )
    assert replay.state == "failed" and "nothing was changed, request again" in replay.headline
    assert "prod's active bundle was v1 · sha256:000000000000" in replay.headline
    assert len(fake.promote_calls) == 1  # neither was sent
    await client.aclose()


async def test_wrong_token_is_401_and_never_echoed(znyx: tuple[FakeZnyx, str]) -> None:
    _, url = znyx
    client = _client(url, token="stolen-or-expired-token")
    with pytest.raises(ProviderAuthError) as caught:
        await client.promote(STAGING, "x", Steps.in_memory())
    assert "rejected the bot's credentials (ZNYX_TOKEN)" in caught.value.message
    assert "Not authenticated" in caught.value.message
    assert "stolen-or-expired-token" not in caught.value.message
    await client.aclose()


async def test_token_without_scope_is_403(znyx: tuple[FakeZnyx, str]) -> None:
    fake, url = znyx
    client = _client(url, token="znyx-read-only")
    with pytest.raises(ProviderAuthError) as caught:
        await client.promote(STAGING, "x", Steps.in_memory())
    assert "lack the `bundle:publish` scope" in caught.value.message
    assert "Insufficient scope" in caught.value.message
    assert fake.active("proj-guardrails", "prod").version == 1  # type: ignore[union-attr]
    await client.aclose()


async def test_422_lists_what_was_invalid(znyx: tuple[FakeZnyx, str]) -> None:
    fake, url = znyx
    detail = [{"loc": ["body", "promoted_by"], "msg": "String too long", "type": "string_too_long"}]
    fake.fail_next(422, detail)
    client = _client(url)
    with pytest.raises(ProviderRejected) as caught:
        await client.promote(STAGING, "x", Steps.in_memory())
    assert caught.value.status == 422
    assert "rejected the request as invalid (HTTP 422: body.promoted_by: String too long)" in (
        caught.value.message
    )
    await client.aclose()


async def test_5xx_on_promote_is_not_retried_and_its_fate_is_unknown(
    znyx: tuple[FakeZnyx, str],
) -> None:
    fake, url = znyx
    fake.fail_next(503, "upstream unavailable")
    client = _client(url)
    with pytest.raises(ProviderServerError) as caught:
        await client.promote(STAGING, "x", Steps.in_memory())
    assert caught.value.fate == "unknown" and "upstream unavailable" in caught.value.message
    assert len(fake.promote_calls) == 1
    await client.aclose()


async def test_timeout_after_sending_is_unknown(znyx: tuple[FakeZnyx, str]) -> None:
    fake, url = znyx
    fake.promote_delay = 1.0
    client = _client(url, timeout=0.2)
    with pytest.raises(ProviderTimeout) as caught:
        await client.promote(STAGING, "x", Steps.in_memory())
    assert caught.value.fate == "unknown" and "did not answer within 0.2 s" in caught.value.message
    assert len(fake.promote_calls) == 1
    await client.aclose()


async def test_unreachable_is_certainly_failed() -> None:
    async with WebServer(FakeZnyx().app()) as server:
        url = server.url  # a port that was just closed again
    client = _client(url)
    with pytest.raises(ProviderUnreachable) as caught:
        await client.promote(STAGING, "x", Steps.in_memory())
    assert caught.value.fate == "failed" and "could not be reached" in caught.value.message
    await client.aclose()


async def test_unreachable_names_the_url_it_tried_and_no_secret() -> None:
    async with WebServer(FakeZnyx().app()) as server:
        url = server.url  # a port that was just closed again
    base = url.replace("http://", "http://ops:hunter2@") + "/znyx"
    client = _client(base)
    with pytest.raises(ProviderUnreachable) as caught:
        await client.preview(STAGING)
    where = url + "/znyx/v1/orgs/org-test/projects/proj-guardrails/envs/staging/bundles"
    assert caught.value.message.startswith(f"Znyx could not be reached at {where} (")
    assert "hunter2" not in caught.value.message and "ops" not in caught.value.message
    assert ZNYX_TOKEN not in caught.value.message
    await client.aclose()


async def test_a_timeout_names_the_url(znyx: tuple[FakeZnyx, str]) -> None:
    fake, url = znyx
    fake.promote_delay = 1.0
    client = _client(url, timeout=0.2)
    with pytest.raises(ProviderTimeout) as caught:
        await client.promote(STAGING, "x", Steps.in_memory())
    path = "/v1/orgs/org-test/projects/proj-guardrails/envs/staging/promote"
    assert caught.value.message == f"Znyx did not answer within 0.2 s ({url}{path})"
    await client.aclose()


async def test_preview_refuses_when_the_source_has_nothing(znyx: tuple[FakeZnyx, str]) -> None:
    fake, url = znyx
    fake.projects["proj-guardrails"]["staging"].clear()
    client = _client(url)
    preview = await client.preview(STAGING)
    assert preview.refusal == "Nothing to promote: guardrails has no active bundle in staging."
    await client.aclose()


async def test_ids_cannot_leave_their_path_segment(znyx: tuple[FakeZnyx, str]) -> None:
    fake, url = znyx
    tricky = STAGING.model_copy(update={"project_id": "../proj-guardrails"})
    client = _client(url)
    with pytest.raises(ProviderRejected):
        await client.promote(tricky, "x", Steps.in_memory())
    assert fake.promote_calls[-1].path.startswith("/v1/orgs/org-test/projects/")
    assert fake.active("proj-guardrails", "prod").version == 1  # type: ignore[union-attr]
    await client.aclose()
