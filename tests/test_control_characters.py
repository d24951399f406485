"""Control characters (NUL, ANSI escapes, U+202E RIGHT-TO-LEFT OVERRIDE) never get in: a
command holding one is refused at its ack with a clear answer, provider text holding one is
stored without a database error (PostgreSQL's text can't hold NUL) and shown as `�`, and text
log lines show them as escapes. On SQLite and on a real PostgreSQL, over signed HTTP."""

from __future__ import annotations

import io
import logging
import tomllib

import pytest

from bot import logs
from bot.config import parse_config
from bot.core.commands import Lock, UsageError, parse
from bot.core.markup import literal
from bot.core.model import State
from bot.transports.slack.blocks import REJECT
from bot.transports.slack.modals import SAID
from tests.conftest import ALICE, BOB, CONFIG, STOREFRONT, World

RULES = parse_config(tomllib.loads(CONFIG))
HOSTILE = ["NUL\x00here", "ANSI \x1b[31mred\x1b[0m", "RLO \u202etxt.exe", "DEL\x7f", "C1\x9b"]


@pytest.fixture
def world_db(shared_db: str) -> str:
    return shared_db  # every test here on SQLite and on PostgreSQL


@pytest.mark.parametrize("reason", HOSTILE)
async def test_a_command_with_a_control_character_is_refused_at_its_ack(
    world: World, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    for text in (f"lock znyx:*:prod {reason}", f"znyx guardrails staging --emergency {reason}"):
        response = await world.sender.command(text, ALICE)
        assert response.status_code == 200
        answer = response.json()
        assert answer["response_type"] == "ephemeral"
        assert "control character, U+" in answer["text"] and "type it again" in answer["text"]
    store = world.bot.store
    assert store.locks() == [] and store.inbox_undone() == 0 and world.posted() == []
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_form_whose_text_holds_a_control_character_is_answered_in_the_form(
    world: World,
) -> None:
    await world.requested("znyx guardrails staging", ALICE)
    view = await world.opened_form(REJECT, 1, BOB)
    response = await world.sender.submit(view, BOB, "regression \u202egnp.exe")
    assert response.status_code == 200
    errors = response.json()
    assert errors["response_action"] == "errors"
    assert "U+202E (RIGHT-TO-LEFT OVERRIDE)" in errors["errors"][SAID]
    request = world.bot.store.get(1)
    assert request is not None and request.state is State.PENDING and request.reason is None


async def test_provider_text_with_a_nul_is_stored_and_shown_not_a_database_outage(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """Once, on PostgreSQL, a NUL made the audit insert fail: 'can't use its database', three
    retries and an ERROR log, for one build's review message."""
    review = "crashes\x00 on \x1b[2Jlaunch \u202eexe."
    rejected = world.whop.add_build(STOREFRONT, "ios", "rejected", review_message=review).id
    said = await world.answer(f"whop storefront {rejected}", ALICE)
    assert "is rejected" in said and "crashes� on �[2Jlaunch �exe." in said
    assert "database" not in said
    history = await world.answer("history", ALICE)
    assert "crashes� on" in history and "\x00" not in history and "\x1b" not in history
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_parse_refuses_control_characters_and_names_them() -> None:
    with pytest.raises(UsageError, match=r"U\+202E \(RIGHT-TO-LEFT OVERRIDE\)"):
        parse("lock znyx:*:prod because \u202eevil", RULES)
    for reason in HOSTILE:
        with pytest.raises(UsageError, match="control character"):
            parse(f"lock znyx:*:prod {reason}", RULES)
    # Tabs and line breaks are whitespace; emoji joiners are text.
    assert parse("lock\tznyx:*:prod two\nlines 👩‍💻", RULES) == Lock(
        "znyx:*:prod", "two lines 👩‍💻"
    )


def test_shown_text_gets_a_replacement_for_each_control_character() -> None:
    assert literal("a\x1b[31mb\u202ec\x00 & <d>\n") == "a�[31mb�c� &amp; &lt;d&gt;\n"


def test_a_text_log_line_shows_control_characters_as_escapes() -> None:
    stream = io.StringIO()
    handler = logs.configure(logging.INFO, "text", stream=stream)
    try:
        logging.getLogger("promote-bot.test").info(
            "locked: %s", "incident\x1b[31m \u202egnp.exe\n2026-01-01 00:00:00 ERROR forged"
        )
    finally:
        logging.getLogger().removeHandler(handler)
    [line] = stream.getvalue().splitlines()
    assert line.endswith(
        "locked: incident\\x1b[31m \\u202egnp.exe\\n2026-01-01 00:00:00 ERROR forged"
    )
    assert "\x1b" not in line and "\u202e" not in line
