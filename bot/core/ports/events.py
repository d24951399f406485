"""Where outgoing events go: the receivers of `[[notify]]`, over HTTP in production."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Sent:
    """What a receiver made of one try: taken (`ok`), refused for good (`gone`: it will never
    take it), or not this time, with why and how long it asked us to wait."""

    ok: bool
    why: str = ""
    gone: bool = False
    retry_after: float | None = None


class EventSender(Protocol):
    async def send(self, url: str, body: bytes, headers: Mapping[str, str]) -> Sent:
        """POST `body` with `headers` to `url`, once; never raises for what the receiver or
        the network did (that is in the `Sent`)."""
        ...
