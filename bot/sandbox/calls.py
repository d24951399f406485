"""What a fake provider records of each request it was sent."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class Call:
    method: str
    path: str
    body: object = None
    at: float = field(default_factory=time.time)  # when it arrived (wall clock, for benchmarks)
    operation: str = ""  # "METHOD /v1/path/{id}", where a fake names its routes
    status: int | None = None  # what it was answered, where a fake records it
    answer: object = None  # the JSON body of that answer
