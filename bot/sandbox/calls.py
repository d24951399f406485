"""What a fake provider records of each request it was sent."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Call:
    method: str
    path: str
    body: object = None
