"""Credentials never leave in text: what a provider says is shown to people, stored in the
audit log and logged, so anything shaped like a credential is cut out first. Pure."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from urllib.parse import unquote

_PATTERNS = (
    re.compile(r"(?i)\b(bearer|basic|token)\s+[A-Za-z0-9._~+/=-]{6,}"),  # Authorization values
    re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"),  # a JWT
    re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{4,}"),  # Slack tokens
    re.compile(r"\bxapp-[A-Za-z0-9-]{4,}"),
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(-----END [A-Z ]*PRIVATE KEY-----|$)", re.S),
)
REDACTED = "[redacted]"
# Each pattern needs one of these (any case): text with none of them is left as it is,
# without running the patterns (the audit export runs this on every field of every entry).
_MARKERS = re.compile(r"(?i)bearer|basic|token|eyJ|xox|xapp-|-----BEGIN")


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with the given secret values and credential-shaped strings replaced."""
    return redactor(secrets)(text)


def redactor(secrets: Iterable[str] = ()) -> Callable[[str], str]:
    """`redact` with these secrets, made once for many texts."""
    known = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def redacted(text: str) -> str:
        for secret in known:
            text = text.replace(secret, REDACTED)
        return _credentials(text) if _MARKERS.search(text) else text

    return redacted


def _credentials(text: str) -> str:
    for pattern in _PATTERNS:
        text = pattern.sub(
            lambda m: f"{m.group(1)} {REDACTED}" if m.re is _PATTERNS[0] else REDACTED, text
        )
    return text


def uri_userinfo(uri: str) -> str | None:
    """What a URI holds between `://` and its last `@` (user and password), if anything."""
    rest = uri.split("://", 1)[1] if "://" in uri else ""
    return rest.rsplit("@", 1)[0] if "@" in rest else None


def uri_passwords(uri: str) -> list[str]:
    """The password a database URI carries in its user part or as `password=` (a query
    parameter, or a key=value string), as written and percent-decoded."""
    user = uri_userinfo(uri) or ""
    found = [user.split(":", 1)[1]] if ":" in user else []
    found += re.findall(r"\bpassword\s*=\s*'?([^&\s']+)", uri)
    return [form for password in found for form in (password, unquote(password))]
