"""A provider section removed from the config (a reload) leaves no way to write to it: its
pending requests are refused at approval, and their messages say why, until it is configured
again; a lock left on it is lifted only by those who hold its scope. Through real HTTP with
the fakes, the config file rewritten and read again as the `config` job does."""

from __future__ import annotations

from bot.core.model import State
from bot.transports.slack.blocks import APPROVE
from tests.conftest import ALICE, BOB, CAROL, CONFIG, MALLORY, World, block_text

WHOP_SECTION = CONFIG[CONFIG.index("[whop.apps]") :]
WITHOUT_WHOP = CONFIG.replace(WHOP_SECTION, "")


async def _reload(world: World, text: str) -> None:
    """Write the config file and let the bot read it again (its `config` job's run)."""
    world.bot.live.path.write_text(text)
    await world.bot.live.check_file()


def _message(world: World) -> str:
    ts = world.bot.store.get(1).message_ts  # type: ignore[union-attr]
    return block_text(world.slack.shown("CRELEASES", ts)["blocks"])  # type: ignore[index]


async def test_a_removed_provider_s_pending_request_is_refused_until_it_is_back(
    world: World,
) -> None:
    await world.requested(f"whop storefront {world.builds.ios_approved}", CAROL)
    await _reload(world, WITHOUT_WHOP)
    response = await world.sender.command("whop storefront apbu_x", CAROL)
    assert (
        response.json()["text"] == "Whop is not configured on this bot (no [whop] in its config)."
    )
    gone = "Whop is no longer configured on this bot (no [whop] in its config)"
    assert f"{gone}: it can't be approved until it is again" in _message(world)

    before = len(world.told())
    await world.sender.click(APPROVE, 1, ALICE)
    await world.slack.wait_for(lambda s: len(world.told()) == before + 1)
    assert world.told()[-1] == (
        f"#1 can't be approved now: {gone}. It can be once it is configured again; until then "
        "it may be rejected or cancelled."
    )
    told = await world.answer("approve 1", ALICE)
    assert told.startswith("#1 can't be approved now: Whop is no longer configured")
    assert world.whop.promote_calls == []
    assert world.bot.store.get(1).state is State.PENDING  # type: ignore[union-attr]
    refused = world.bot.store.db.execute(
        "SELECT detail FROM audit WHERE event = 'approval refused'"
    ).fetchall()
    assert refused == [(gone,), (gone,)]  # audited, saying why

    await _reload(world, CONFIG)  # configured again: the message and the button work again
    assert "no longer configured" not in _message(world)
    await world.sender.click(APPROVE, 1, ALICE)
    assert "is the production ios build of storefront" in await world.finished()
    assert len(world.whop.promote_calls) == 1


async def test_an_emergency_of_a_removed_provider_is_refused_too(world: World) -> None:
    await world.requested(f"whop storefront {world.builds.ios_approved} --emergency p1", CAROL)
    await _reload(world, WITHOUT_WHOP)
    for user in (ALICE, "U0DAVE"):
        told = await world.answer("approve 1", user)
        assert told.startswith("#1 can't be approved now: Whop is no longer configured")
    assert world.whop.promote_calls == []
    told = await world.answer("cancel 1 moved to another bot", CAROL)  # it can still be ended
    assert told == "Request #1 is cancelled."


async def test_a_lock_left_on_a_removed_provider_needs_its_scope_to_lift(world: World) -> None:
    assert (await world.answer("lock whop:storefront incident 7", CAROL)).startswith("🔒 Locked")
    await _reload(world, WITHOUT_WHOP)
    response = await world.sender.command("unlock whop:storefront", BOB)  # bundle:publish only
    assert response.json()["text"].startswith(
        "You can't unlock this: it needs the `developer:manage_builds` scope"
    )
    response = await world.sender.command("unlock whop:storefront", MALLORY)  # no role at all
    assert "You have no role in promote-bot" in response.json()["text"]
    assert [lock.pattern for lock in world.bot.store.locks()] == ["whop:storefront"]
    told = await world.answer("unlock whop:storefront", CAROL)  # holds the scope: may lift it
    assert told.startswith("🔓 Unlocked `whop:storefront`")
    assert world.bot.store.locks() == []
