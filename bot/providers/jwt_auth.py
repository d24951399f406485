"""API-key tokens: short-lived ES256 JWTs signed with a provider's private key, as an `httpx.Auth`.

One token is kept in memory and reused until shortly before it expires; after a 401 it is
re-signed once and the request sent again once. Tokens are never written anywhere.

PyJWT and cryptography are imported when a key is loaded or a token signed, not with this
module: the registry imports every provider, and a bot with no App Store configured should not
pay for them at start-up (about 0.2 s of a 1.4 s start).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec

LIFETIME_SECONDS = 20 * 60  # the longest App Store Connect accepts
RENEW_BEFORE_SECONDS = 60  # sign a new token when the current one has less than this left


class PrivateKeyError(ValueError):
    """The private key could not be loaded; the message says why, without the key."""


def load_private_key(pem: str | bytes) -> ec.EllipticCurvePrivateKey:
    """Load a `.p8` key (PKCS#8 PEM) and check it is a P-256 key, as Apple issues them."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    data = pem.encode() if isinstance(pem, str) else pem
    try:
        key = load_pem_private_key(data.strip() + b"\n", password=None)
    except (ValueError, TypeError):
        raise PrivateKeyError(
            "it is not a PEM private key (the contents of an AuthKey_….p8 file)"
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise PrivateKeyError("it is not an ES256 (P-256) key")
    return key


def load_private_key_file(path: Path) -> ec.EllipticCurvePrivateKey:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PrivateKeyError(f"cannot read {path}: {exc.strerror}") from None
    return load_private_key(data)


class ApiKeyToken(httpx.Auth):
    """Signs `{iss, iat, exp, aud}` with `kid` in the header; subclasses set `audience`."""

    audience: str

    def __init__(
        self,
        issuer_id: str,
        key_id: str,
        private_key: ec.EllipticCurvePrivateKey,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.issuer_id = issuer_id
        self.key_id = key_id
        self._key = private_key
        self._clock = clock
        self._token: str | None = None
        self._expires_at = 0.0
        self.signed = 0  # how many tokens this process has signed

    def token(self) -> str:
        """The current token, signing a new one only when it is missing or about to expire."""
        now = self._clock()
        if self._token is None or now >= self._expires_at - RENEW_BEFORE_SECONDS:
            import jwt

            issued = int(now)
            self._expires_at = issued + LIFETIME_SECONDS
            self._token = jwt.encode(
                {
                    "iss": self.issuer_id,
                    "iat": issued,
                    "exp": issued + LIFETIME_SECONDS,
                    "aud": self.audience,
                },
                self._key,
                algorithm="ES256",
                headers={"kid": self.key_id, "typ": "JWT"},
            )
            self.signed += 1
        return self._token

    def invalidate(self) -> None:
        self._token = None

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self.token()}"
        response = yield request
        if response.status_code == 401:
            self.invalidate()
            request.headers["Authorization"] = f"Bearer {self.token()}"
            yield request
