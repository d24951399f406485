"""Every provider the bot knows, in the order help lists them. Adding a provider: its module
(declaring its `SPEC`), its fake under `bot/sandbox/`, its tests, and one line here."""

from __future__ import annotations

from typing import Any

from bot.providers import appstore, whop, znyx
from bot.providers.spec import ProviderSpec

PROVIDERS: dict[str, ProviderSpec[Any, Any]] = {
    spec.name: spec
    for spec in (
        znyx.SPEC,
        whop.SPEC,
        appstore.SPEC,
    )
}
