"""One escaping rule for everything shown: text from outside (a provider's words, a reason
someone typed) is escaped once where it enters the core's markup, wherever it is shown (release
messages, answers only one person sees, `history`, `status`, the App Home), never twice; the
shell shows it as it was. Signed Slack requests in, the fake Slack and fake Whop over HTTP."""

from __future__ import annotations

from pathlib import Path

from bot.core.markup import literal
from bot.transports.slack.blocks import APPROVE
from tests.conftest import ALICE, BOB, CAROL, STOREFRONT, World, block_text
from tests.test_shell import shell

HOSTILE = "<!channel> read <https://evil.example/x|the docs> & fix"
ESCAPED = "&lt;!channel&gt; read &lt;https://evil.example/x|the docs&gt; &amp; fix"


def _clean(text: str) -> None:
    """Shown in Slack's markup: escaped once, no live ping or link, nothing escaped twice."""
    assert "<!channel>" not in text and "<https://evil" not in text
    assert "&amp;amp;" not in text and "&amp;lt;" not in text


async def test_provider_text_is_escaped_once_in_every_answer(world: World) -> None:
    assert literal(HOSTILE) == ESCAPED
    rejected = world.whop.add_build(STOREFRONT, "ios", "rejected", review_message=HOSTILE).id
    said = await world.answer(f"whop storefront {rejected}", ALICE)  # only she sees it
    assert ESCAPED in said
    _clean(said)

    history = await world.answer("history", ALICE)
    assert ESCAPED in history
    _clean(history)

    await world.sender.home_opened(ALICE)
    await world.slack.wait_for(lambda s: len(s.calls_to("views.publish")) == 1)
    home = block_text(world.slack.calls_to("views.publish")[0].args["view"]["blocks"])
    assert ESCAPED in home
    _clean(home)

    draft = world.whop.add_build(STOREFRONT, "ios", "draft", review_message=HOSTILE).id
    await world.requested(f"whop storefront {draft}", ALICE)  # its message shows the review
    message = block_text(world.posted()[-1]["blocks"])
    assert ESCAPED in message
    _clean(message)


async def test_a_reason_is_stored_as_typed_and_shown_escaped_once(world: World) -> None:
    """Slack sends `&` as `&amp;` (the test sender does as Slack does): it once showed as
    `&amp;amp;`."""
    reason = "R&D <!here> is down"
    await world.requested(f"znyx guardrails staging --emergency {reason}", ALICE)
    request = world.bot.store.get(1)
    assert request is not None and request.emergency == reason  # as typed
    message = block_text(world.posted()[-1]["blocks"])
    assert "R&amp;D &lt;!here&gt; is down" in message and "&amp;amp;" not in message

    said = await world.answer("lock znyx:*:staging Q&A <@U0BOB> says wait", BOB)
    assert "Q&amp;A &lt;@U0BOB&gt; says wait" in said
    locks = await world.answer("locks", ALICE)
    assert "Q&amp;A &lt;@U0BOB&gt; says wait" in locks and "&amp;amp;" not in locks
    assert world.bot.store.locks()[0].reason == "Q&A <@U0BOB> says wait"

    status = await world.answer("status 1", ALICE)  # its timeline has the 🚨 entry
    assert "R&amp;D &lt;!here&gt; is down" in status and "&amp;amp;" not in status
    told = len(world.told())
    await world.sender.click(APPROVE, 1, BOB)
    await world.slack.wait_for(lambda s: len(world.told()) == told + 1)  # "needs 1 more"
    history = await world.answer("history", ALICE)
    assert "R&amp;D &lt;!here&gt; is down" in history
    assert "<!here>" not in history and "&amp;amp;" not in history


def test_the_shell_shows_outside_text_as_it_was(tmp_path: Path) -> None:
    script = "\n".join(
        [
            "/promote lock whop:* Q&A <!here> wait",
            "/promote locks",
            "/promote whop apbu_ios151 --emergency R&D <b> down",
            "/promote history",
        ]
    )
    result = shell(script + "\n", "--sandbox", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "» 🔒 Locked `whop:*`: Q&A <!here> wait." in out
    assert "locked by @U_ALICE" in out and ": Q&A <!here> wait" in out
    assert "│ 🚨 Emergency (needs one approval more): R&D <b> down" in out
    assert "&amp;" not in out and "&lt;" not in out


async def test_a_failed_listing_read_shows_the_providers_words_as_text(world: World) -> None:
    world.asc.fail_next(400, "Bad", HOSTILE, method="GET")
    said = await world.answer("appstore builds ios", CAROL)
    assert ESCAPED in said
    _clean(said)


async def test_a_listing_shows_the_providers_words_as_text(world: World) -> None:
    world.whop.add_build(STOREFRONT, HOSTILE, "draft")  # its platform, as Whop has it
    said = await world.answer("whop builds storefront", CAROL)
    assert "&lt;!channel&gt; read" in said
    _clean(said)
