"""Pure parts of the truth between promotions: what the bot reads of a webhook's body, and
how a preview that no longer holds is shown."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot import logs
from bot.config import ConfigError, Settings, load_settings
from bot.core.drift import refusal_text
from bot.core.model import Drift, Preview, Request, State
from bot.core.policy import Policy
from bot.core.render import request_view
from bot.providers.registry import PROVIDERS
from bot.providers.znyx import ZnyxPromote
from bot.transports.shell import release_text
from bot.transports.slack.blocks import release_message
from bot.webhooks import hint_of
from tests.conftest import block_text

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def test_a_webhook_is_read_at_the_top_level_or_under_data_and_nothing_else_is_believed() -> None:
    top = {"event": "bundle.promoted", "from_environment": "staging", "to_environment": "prod"}
    assert hint_of(top) == {
        "event": "bundle.promoted",
        "envs": ["staging", "prod"],
        "changed": ["prod"],
        "project": None,
    }
    nested = {
        "type": "bundle.activated",
        "delivery": {"id": 7},
        "data": {"environment": "prod", "project_id": "proj-1", "version": 3, "extra": [1]},
    }
    assert hint_of(nested) == {
        "event": "bundle.activated",
        "envs": ["prod"],
        "changed": ["prod"],
        "project": "proj-1",
    }
    odd = {
        "event": "bundle.promoted",
        "to_environment": "../prod",  # not a stage: never put in a path
        "from_environment": 3,
        "project_id": "x" * 500,
        "data": "not an object",
    }
    assert hint_of(odd) == {"event": "bundle.promoted", "envs": [], "changed": [], "project": None}
    assert hint_of({"data": {}})["event"] == ""  # type: ignore[index]
    for not_an_object in ([1, 2], "bundle.promoted", 3, None):
        assert hint_of(not_an_object) is None


def test_who_a_provider_says_did_it_can_mention_or_link_nobody() -> None:
    drift = Drift(provider="Znyx", what="prod", then="v1", now="v2", by="<!channel> <https://x|y>")
    view = request_view(_request(State.PENDING, drift), Policy())
    assert view.drift is not None and "<" not in view.drift and "&lt;!channel&gt;" in view.drift
    assert "<!channel>" not in block_text(release_message(view))
    assert "<!channel>" not in refusal_text(_request(State.PENDING, drift), drift)


def _request(state: State, drift: Drift | None) -> Request:
    action = ZnyxPromote(org_id="o", project="guardrails", project_id="p", source_env="staging")
    return Request(
        id=4,
        action=action,
        requester="U0ALICE",
        channel="C1",
        state=state,
        preview=Preview(expect={"destination": "v1"}),
        created_at=NOW,
        updated_at=NOW,
        expires_at=NOW + timedelta(days=1),
        drift=drift,
    )


def test_a_preview_that_no_longer_holds_is_shown_while_the_request_is_open() -> None:
    drift = Drift(
        provider="Znyx",
        what="prod's active bundle",
        then="v1 · sha256:000000000000",
        now="v2 · sha256:555555555555",
        by="ui:carol",
    )
    view = request_view(_request(State.PENDING, drift), Policy())
    assert view.status == (
        "⚠️ Out of date: prod's active bundle is v2 · sha256:555555555555 now; approving will "
        "not promote it"
    )
    assert view.drift == (
        "Znyx shows prod's active bundle: v1 · sha256:000000000000 when this was asked, "
        "v2 · sha256:555555555555 now (published by ui:carol)"
    )
    assert view.buttons  # reject, and cancel, stay possible
    slack = block_text(release_message(view))
    assert "*Out of date:* Znyx shows prod's active bundle" in slack
    assert "/promote cancel 4" in slack
    assert "│ ⚠️ Out of date: Znyx shows prod's active bundle" in release_text(view)

    ended = request_view(_request(State.CANCELLED, drift), Policy())
    assert ended.drift is None and "Out of date" not in ended.status
    assert "Out of date" not in block_text(release_message(ended))


@pytest.mark.parametrize("value", ["5", "86401", "often"])
def test_the_drift_period_is_checked(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("PROMOTE_BOT_DRIFT_SECONDS", value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert str(caught.value) == (
        f"PROMOTE_BOT_DRIFT_SECONDS: expected a whole number from 10 to 86400, not {value!r}"
    )


def test_the_webhook_secret_is_a_secret_setting() -> None:
    secret = "whsec-never-in-a-log-line"
    models = [Settings, *(spec.settings for spec in PROVIDERS.values())]
    found = logs.secret_values(models, {"ZNYX_WEBHOOK_SECRET": secret})
    assert found == [secret]
    assert logs.Redactor(found).redact(f"signed with {secret}") == "signed with [redacted]"
