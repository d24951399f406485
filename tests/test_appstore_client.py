"""App Store Connect tokens and client against the fake over real HTTP."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from bot.core.errors import ProviderTimeout
from bot.core.steps import Steps
from bot.providers.appstore import AppStoreAttach, AppStoreExpire, AppStoreProvider, AppStoreToken
from bot.providers.jwt_auth import (
    LIFETIME_SECONDS,
    PrivateKeyError,
    load_private_key,
)
from bot.sandbox.appstore import FakeAppStore
from bot.web import WebServer
from tests.conftest import (
    ASC_ISSUER,
    ASC_KEY,
    ASC_KID,
    ASC_PEM,
    IOS_APP,
    AppStoreWorld,
    seed_appstore,
)


@pytest.fixture
async def asc() -> AsyncIterator[tuple[FakeAppStore, AppStoreWorld, str]]:
    fake = FakeAppStore()
    ids = seed_appstore(fake)
    async with WebServer(fake.app()) as server:
        yield fake, ids, server.url


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def _token(clock: Clock | None = None) -> AppStoreToken:
    return AppStoreToken(ASC_ISSUER, ASC_KID, load_private_key(ASC_PEM), clock=clock or time.time)


async def test_one_token_serves_100_calls(asc: tuple[FakeAppStore, AppStoreWorld, str]) -> None:
    fake, ids, url = asc
    token = _token()
    client = AppStoreProvider.create(url, token)
    action = AppStoreExpire(app="ios", app_id=IOS_APP, build="153")
    for _ in range(100):
        build = await client.build(action)
        assert not isinstance(build, str) and build.id == ids.b153_undeclared
    assert token.signed == 1 and len(fake.tokens_seen) == 1
    await client.aclose()


def test_the_token_follows_apples_rules_and_is_renewed_before_it_expires() -> None:
    clock = Clock()
    token = _token(clock)
    first = token.token()
    header = jwt.get_unverified_header(first)
    assert header == {"alg": "ES256", "kid": ASC_KID, "typ": "JWT"}
    claims = jwt.decode(
        first, ASC_KEY.public_key(), algorithms=["ES256"], audience="appstoreconnect-v1"
    )
    assert claims["iss"] == ASC_ISSUER and claims["exp"] - claims["iat"] == LIFETIME_SECONDS <= 1200
    clock.now += LIFETIME_SECONDS - 120
    assert token.token() == first and token.signed == 1
    clock.now += 90  # within a minute of expiry: a new one
    assert token.token() != first and token.signed == 2


def _forged(**changes: object) -> str:
    now = int(time.time())
    claims = {"iss": ASC_ISSUER, "iat": now, "exp": now + 600, "aud": "appstoreconnect-v1"}
    headers = {"kid": ASC_KID, "typ": "JWT"}
    key: ec.EllipticCurvePrivateKey = ASC_KEY
    for name, value in changes.items():
        if name == "kid":
            headers["kid"] = str(value)
        elif name == "key":
            key = value  # type: ignore[assignment]
        else:
            claims[name] = value  # type: ignore[assignment]
    return jwt.encode(claims, key, algorithm="ES256", headers=headers)


@pytest.mark.parametrize(
    "token",
    [
        _forged(aud="appstoreconnect-v2"),
        _forged(iat=int(time.time()) - 1200, exp=int(time.time()) - 60),
        _forged(kid="UNKNOWNKID"),
        _forged(key=ec.generate_private_key(ec.SECP256R1())),
        _forged(exp=int(time.time()) + 3600),
        _forged(iss="someone-else"),
        "not-a-jwt",
    ],
    ids=[
        "wrong-aud",
        "expired",
        "unknown-kid",
        "bad-signature",
        "too-long",
        "wrong-iss",
        "garbage",
    ],
)
async def test_the_fake_refuses_bad_tokens_with_an_errors_body(
    asc: tuple[FakeAppStore, AppStoreWorld, str], token: str
) -> None:
    _, ids, url = asc
    async with httpx.AsyncClient() as http:
        response = await http.get(
            f"{url}/v1/builds/{ids.b153_undeclared}", headers={"Authorization": f"Bearer {token}"}
        )
    assert response.status_code == 401
    [error] = response.json()["errors"]
    assert error["status"] == "401" and error["code"] == "NOT_AUTHORIZED" and error["title"]


async def test_a_patch_that_times_out_is_read_back_not_sent_again(
    asc: tuple[FakeAppStore, AppStoreWorld, str],
) -> None:
    fake, ids, url = asc
    fake.patch_delay = 1.0
    client = AppStoreProvider.create(url, _token(), timeout=httpx.Timeout(0.3))
    action = AppStoreExpire(app="ios", app_id=IOS_APP, build="155", build_id=ids.b155_exempt)
    with pytest.raises(ProviderTimeout):  # read back before the slow PATCH lands: still unknown
        await client.execute(action, promoted_by="x", expect={}, steps=Steps.in_memory())
    assert len(fake.patches) == 1
    attach = AppStoreAttach(
        app="ios",
        app_id=IOS_APP,
        version="2.4.0",
        build="153",
        version_id=ids.v240,
        build_id=ids.b153_undeclared,
    )
    outcome = await client.execute(attach, promoted_by="x", expect={}, steps=Steps.in_memory())
    assert outcome.state == "unknown" and "Reading it back shows 152" in (outcome.check or "")
    assert len(fake.patches) == 2  # one per action, never repeated
    await client.aclose()


def _p384_pem() -> str:
    key = ec.generate_private_key(ec.SECP384R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@pytest.mark.parametrize(
    ("pem", "reason"),
    [("garbage", "not a PEM private key"), (_p384_pem(), "not an ES256 \\(P-256\\) key")],
)
def test_keys_that_do_not_load(pem: str, reason: str) -> None:
    with pytest.raises(PrivateKeyError, match=reason):
        load_private_key(pem)


async def test_a_2xx_with_an_unreadable_body_is_never_failed(
    asc: tuple[FakeAppStore, AppStoreWorld, str],
) -> None:
    fake, ids, url = asc
    fake.patch_answers_garbled = True  # applied, but answered with an HTML body
    client = AppStoreProvider.create(url, _token())
    action = AppStoreExpire(app="ios", app_id=IOS_APP, build="155", build_id=ids.b155_exempt)
    outcome = await client.execute(
        action, promoted_by="x", expect={"expired": "no"}, steps=Steps.in_memory()
    )
    assert outcome.state == "succeeded", outcome
    assert "confirmed by reading it back" in outcome.headline
    assert fake.builds[ids.b155_exempt].expired and len(fake.patches) == 1
    await client.aclose()
