"""The Whop client against the fake Whop over real HTTP: paging and reading builds."""

from __future__ import annotations

import pytest

from bot.core.errors import ProviderAuthError
from bot.providers.whop import WhopPromote, WhopProvider
from bot.sandbox.whop import FakeWhop
from bot.web import WebServer

APP = "app_paged000001"


async def test_the_production_build_is_found_pages_away() -> None:
    fake = FakeWhop(keys={"k": {"developer:manage_builds"}})
    oldest = fake.add_build(APP, "ios", "approved", production=True)
    for _ in range(150):
        fake.add_build(APP, "ios", "draft")
    newest = fake.add_build(APP, "ios", "approved")
    async with WebServer(fake.app()) as server:
        client = WhopProvider.create(server.url, "k")
        action = WhopPromote(app="paged", app_id=APP, build_id=newest.id)
        production, seen = await client.production_build(action, "ios")
        assert production is not None and production.id == oldest.id and seen
        lists = [c for c in fake.calls if c.path.startswith("/app_builds?")]
        assert len(lists) == 2 and "after=" in lists[1].path and "first=100" in lists[0].path

        preview = await client.preview(action)
        assert {f.label: f.value for f in preview.facts}["Replaces"].startswith(oldest.id)

        stranger = WhopPromote(app="paged", app_id=APP, build_id="apbu_elsewhere")
        fake.add_build("app_other0000001", "ios", "approved", build_id="apbu_elsewhere")
        production, seen = await client.production_build(stranger, "ios")
        assert production is not None and not seen
        await client.aclose()


async def test_a_key_without_the_scope_is_403() -> None:
    fake = FakeWhop(keys={"k": set()})
    build = fake.add_build(APP, "web", "approved")
    async with WebServer(fake.app()) as server:
        client = WhopProvider.create(server.url, "k")
        with pytest.raises(ProviderAuthError, match="lack the `developer:manage_builds` scope"):
            await client.build(build.id)
        await client.aclose()
