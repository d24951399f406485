"""Rollback, pure: what each provider's rules make of a succeeded request, the policy a rollback
gets, and how a rollback and the request it undoes are shown."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from bot.config import parse_config
from bot.core.model import Outcome, Request, State
from bot.core.policy import Policy
from bot.core.render import request_view
from bot.core.texts import status_text
from bot.providers.appstore import (
    AppStoreAttach,
    AppStoreDetach,
    AppStoreEncryption,
    AppStoreExpire,
)
from bot.providers.whop import WhopPromote
from bot.providers.znyx import ZnyxActivate, ZnyxPromote
from bot.transports.shell import release_text, thread_text
from bot.transports.slack.blocks import ROLLBACK, release_message, thread_reply

RULES = parse_config(
    {
        "roles": {"rm": ["bundle:publish", "developer:manage_builds"]},
        "members": {"U1ALICE": ["rm"], "U1BOB": ["rm"]},
        "znyx": {"org": "o", "projects": {"guardrails": "p"}},
        "whop": {"apps": {"storefront": "app_store1"}},
        "appstore": {"apps": {"ios": "1234567890"}},
        "policies": {"znyx:*:prod": {"approvals": 1, "rollback_approvals": 0}},
    }
)
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
PROMOTE = ZnyxPromote(org_id="o", project="guardrails", project_id="p", source_env="staging")
VERSION = "11111111-2222-3333-4444-555555555555"


def _done(before: dict[str, str], installed: dict[str, str]) -> Outcome:
    return Outcome(state="succeeded", headline="done", before=before, installed=installed)


def test_znyx_rolls_back_by_activating_the_version_before() -> None:
    outcome = _done({"env": "prod", "version": "3"}, {"env": "prod", "version": "4"})
    undo = RULES.providers["znyx"].rollback(PROMOTE, outcome)
    assert undo == ZnyxActivate(
        org_id="o", project="guardrails", project_id="p", env="prod", version=3, undoing="4"
    )
    assert undo.thing == PROMOTE.thing  # one open request per environment, both ways
    none_before = _done({"env": "prod", "version": ""}, {"env": "prod", "version": "1"})
    assert RULES.providers["znyx"].rollback(PROMOTE, none_before) == (
        "prod had no active bundle before it, and Znyx can't deactivate one"
    )
    assert "no record" in str(RULES.providers["znyx"].rollback(PROMOTE, _done({}, {})))


def test_whop_rolls_back_by_promoting_the_build_before() -> None:
    action = WhopPromote(app="storefront", app_id="app_store1", build_id="apbu_2", platform="ios")
    undo = RULES.providers["whop"].rollback(
        action, _done({"production": "apbu_1"}, {"production": "apbu_2"})
    )
    assert undo == action.model_copy(update={"build_id": "apbu_1", "undoing": "apbu_2"})
    assert "no production ios build before it" in str(
        RULES.providers["whop"].rollback(action, _done({"production": ""}, {"production": "x"}))
    )


def test_app_store_rolls_back_attach_detach_and_encryption_but_not_expire() -> None:
    rules = RULES.providers["appstore"]
    attach = AppStoreAttach(
        app="ios", app_id="1", version="2.4.0", version_id=VERSION, build="153", build_id="b153"
    )
    was_152 = _done({"attached": "b152", "number": "152"}, {"attached": "b153", "number": "153"})
    assert rules.rollback(attach, was_152) == AppStoreAttach(
        app="ios",
        app_id="1",
        version="2.4.0",
        version_id=VERSION,
        build="152",
        build_id="b152",
        undoing="b153",
    )
    was_empty = _done({"attached": "", "number": ""}, {"attached": "b153", "number": "153"})
    detach = rules.rollback(attach, was_empty)
    assert detach == AppStoreDetach(
        app="ios",
        app_id="1",
        version="2.4.0",
        version_id=VERSION,
        build="153",
        build_id="b153",
        undoing="b153",
    )
    detached = _done({"attached": "b153", "number": "153"}, {"attached": "", "number": ""})
    assert rules.rollback(detach, detached) == attach.model_copy(update={"undoing": ""})

    encryption = AppStoreEncryption(
        app="ios", app_id="1", build="155", build_id="b155", uses_non_exempt_encryption=True
    )
    back = rules.rollback(encryption, _done({"encryption": "exempt"}, {"encryption": "non-exempt"}))
    assert isinstance(back, AppStoreEncryption)
    assert back.uses_non_exempt_encryption is False and back.undoing == "non-exempt"
    undeclared = _done({"encryption": "not declared"}, {"encryption": "non-exempt"})
    assert "was not declared before it" in str(rules.rollback(encryption, undeclared))

    expire = AppStoreExpire(app="ios", app_id="1", build="155", build_id="b155")
    assert not expire.reversible
    assert "can't be made unexpired" in str(rules.rollback(expire, _done({}, {})))


def test_a_rollback_gets_the_rollback_approvals_of_its_target() -> None:
    activate = ZnyxActivate(org_id="o", project="guardrails", project_id="p", env="prod", version=3)
    assert RULES.policy(activate).approvals == 1  # an explicit activation: approvals
    assert RULES.policy(activate.model_copy(update={"undoing": "4"})).approvals == 0
    staging = activate.model_copy(update={"env": "staging", "undoing": "4"})
    assert RULES.policy(staging).approvals == 1  # the default policy has no rollback_approvals


def _request(request_id: int, state: State, **changes: object) -> Request:
    return Request(
        id=request_id,
        action=PROMOTE,
        requester="UALICE",
        channel="C",
        state=state,
        outcome=Outcome(state="succeeded", headline="guardrails bundle v4 is active in prod"),
        created_at=NOW,
        updated_at=NOW,
        expires_at=NOW + timedelta(hours=1),
        **changes,  # type: ignore[arg-type]
    )


def test_views_link_a_rollback_and_the_request_it_undoes() -> None:
    undone = request_view(_request(3, State.SUCCEEDED, rolled_back_by=5), Policy())
    assert undone.status.endswith("(rolled back by #5)")
    assert undone.link == "↩️ Rolled back by #5" and not undone.can_roll_back
    assert "promote_rollback" not in json.dumps(release_message(undone))
    assert "Rolled back by #5" in status_text(
        _request(3, State.SUCCEEDED, rolled_back_by=5), Policy(), []
    )

    rollback = request_view(_request(5, State.SUCCEEDED, rolls_back=3), Policy())
    assert rollback.link == "↩️ Rolls back #3" and rollback.can_roll_back
    blocks = release_message(rollback)
    assert "↩️ Rolls back #3" in json.dumps(blocks, ensure_ascii=False)
    [button] = [e for b in blocks if b["type"] == "actions" for e in b["elements"]]
    assert (button["action_id"], button["value"]) == (ROLLBACK, "5")
    _, reply = thread_reply(rollback)
    assert "↩️ Rolls back #3" in reply[0]["text"]["text"]
    assert reply[1]["elements"][0]["action_id"] == ROLLBACK
    assert "│ ↩️ Rolls back #3" in release_text(rollback)
    assert release_text(rollback).endswith("└ [rollback 5]")
    assert "[rollback 5]" in thread_text(rollback)

    failed = request_view(_request(6, State.FAILED), Policy())
    assert not failed.can_roll_back and "[rollback" not in thread_text(failed)


@pytest.mark.parametrize("state", [State.PENDING, State.EXECUTING, State.FAILED, State.UNKNOWN])
def test_only_a_succeeded_request_offers_roll_back(state: State) -> None:
    assert not request_view(_request(1, state), Policy()).can_roll_back
