"""manifest.yml is a valid Slack app manifest and asks only for what the bot uses."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import jsonschema
import pytest
import yaml
from referencing import Registry, Resource

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = ROOT.parent / "shared" / "slack" / "manifest-schema"
REMOTE = "https://raw.githubusercontent.com/slackapi/manifest-schema/v0.5.0/schemas/"

if not SCHEMAS.is_dir():
    if os.environ.get("CI"):
        raise RuntimeError(f"Slack's manifest schema is missing at {SCHEMAS}")
    pytest.skip(
        "../shared/slack/manifest-schema is not beside this checkout", allow_module_level=True
    )


def _validator() -> jsonschema.Draft7Validator:
    """Slack's top-level schema, its remote $refs served from the local copies."""
    resources = []
    for path in (SCHEMAS / "schemas").glob("*.json"):
        contents = json.loads(path.read_text())
        resources.append((REMOTE + path.name, Resource.from_contents(contents)))
    registry = Registry().with_resources(resources)
    top = json.loads((SCHEMAS / "manifest.schema.json").read_text())
    return jsonschema.Draft7Validator(top, registry=registry)


def _manifest() -> dict:
    return yaml.safe_load((ROOT / "manifest.yml").read_text())


def test_manifest_is_valid() -> None:
    errors = sorted(_validator().iter_errors(_manifest()), key=str)
    assert errors == []


def test_the_validator_catches_a_broken_manifest() -> None:
    broken = copy.deepcopy(_manifest())
    broken["features"]["slash_commands"][0]["command"] = "promote"  # no leading slash
    assert list(_validator().iter_errors(broken))


def test_manifest_declares_what_the_bot_uses_and_no_more() -> None:
    manifest = _manifest()
    [command] = manifest["features"]["slash_commands"]
    assert command["command"] == "/promote" and "znyx" in command["usage_hint"]
    assert manifest["settings"]["interactivity"]["is_enabled"] is True
    assert manifest["settings"]["socket_mode_enabled"] is True
    assert manifest["features"]["app_home"]["home_tab_enabled"] is True
    assert manifest["settings"]["event_subscriptions"]["bot_events"] == ["app_home_opened"]
    assert sorted(manifest["oauth_config"]["scopes"]["bot"]) == [
        "channels:history",  # find a release message whose post's answer was lost
        "chat:write",
        "commands",
        "groups:history",
        "im:history",  # find a direct message whose send's answer was lost
        "im:write",  # direct messages to requesters and approvers
        "usergroups:read",  # the members of user groups named in [members]
        "users:read",  # a requester's time zone, for `--at`
    ]
