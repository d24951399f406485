"""The sandbox: the three providers' fakes on loopback, seeded with a small world.

`promote-bot shell --sandbox` runs the bot's real provider clients against these over HTTP,
so anyone can try the whole flow with no Slack workspace and no provider account.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from bot.core.rules import Rules
from bot.providers.registry import PROVIDERS
from bot.sandbox.appstore import FakeAppStore
from bot.sandbox.whop import FakeWhop
from bot.sandbox.znyx import STAGES, FakeZnyx
from bot.web import WebServer

ZNYX_TOKEN = "sandbox-znyx-token"
WHOP_KEY = "sandbox-whop-key"
ASC_KEY_ID = "SANDBOXKEY"
ASC_ISSUER = "00000000-5a4d-b0c5-0000-000000000000"
STORE_APP = "app_sandboxstore"
IOS_APP = "1234567890"

USERS = {
    "U_ALICE": "release manager: may request and approve everything",
    "U_BOB": "release manager",
    "U_CAROL": "mobile developer: Whop and App Store builds only",
    "U_MALLORY": "outsider: no role",
}

CONFIG: dict[str, Any] = {
    "roles": {
        "release-manager": ["bundle:publish", "developer:manage_builds"],
        "mobile-developer": ["developer:manage_builds"],
    },
    "members": {
        "U_ALICE": ["release-manager"],
        "U_BOB": ["release-manager"],
        "U_CAROL": ["mobile-developer"],
    },
    "znyx": {
        "org": "org-sandbox",
        "projects": {"guardrails": "proj-guardrails"},
        "channel": "C_RELEASES",  # where changes made outside the bot are told
    },
    "whop": {"apps": {"storefront": STORE_APP}},
    "appstore": {"apps": {"ios": IOS_APP}},
}


def seed_znyx(znyx: FakeZnyx) -> None:
    znyx.org_id = "org-sandbox"
    znyx.tokens = {ZNYX_TOKEN: {"bundle:publish"}}
    znyx.add_project("proj-guardrails")
    for env, versions in (("prod", 1), ("staging", 2), ("dev", 3)):
        for n in range(versions):
            znyx.publish("proj-guardrails", env, f"sha256:{env}{n}".ljust(71, "0"))


def seed_whop(whop: FakeWhop) -> None:
    whop.keys = {WHOP_KEY: {"developer:manage_builds"}}
    add = whop.add_build
    add(STORE_APP, "ios", "approved", production=True, build_id="apbu_ios150")
    add(STORE_APP, "android", "approved", production=True, build_id="apbu_android88")
    add(STORE_APP, "ios", "approved", build_id="apbu_ios151")
    add(STORE_APP, "ios", "draft", build_id="apbu_ios152")
    add(STORE_APP, "ios", "pending", build_id="apbu_ios153")
    add(STORE_APP, "ios", "rejected", build_id="apbu_ios149", review_message="Crashes on launch.")
    add(STORE_APP, "android", "approved", build_id="apbu_android89")


def seed_appstore(asc: FakeAppStore, key: ec.EllipticCurvePrivateKey) -> None:
    asc.issuer_id = ASC_ISSUER
    asc.keys = {ASC_KEY_ID: key.public_key()}
    asc.add_build(
        IOS_APP, "150", expired=True, uses_non_exempt_encryption=False, short_version="2.3.0"
    )
    attached = asc.add_build(IOS_APP, "152", uses_non_exempt_encryption=False)
    asc.add_build(IOS_APP, "153")
    asc.add_build(IOS_APP, "154", processing="PROCESSING")
    asc.add_version(IOS_APP, "2.4.0", build_id=attached.id)
    seed_release_train(asc, attached.id)


def seed_release_train(asc: FakeAppStore, testing: str) -> None:
    """TestFlight groups, and a version at each stop of the train after 2.4.0's: 2.3.1
    approved and waiting for its release (with a phased release to start), 2.3.0 rolling out
    in phases (day 3, paused 2 days so far)."""
    train = asc.train
    internal = train.add_group(IOS_APP, "Internal QA", internal=True)
    internal.build_ids.append(testing)
    train.add_beta_review(testing, "APPROVED")
    train.add_group(IOS_APP, "External Testers")
    asc.add_build(IOS_APP, "155", uses_non_exempt_encryption=False)
    approved = asc.add_build(
        IOS_APP, "151", uses_non_exempt_encryption=False, short_version="2.3.1"
    )
    live = asc.add_build(IOS_APP, "148", uses_non_exempt_encryption=False, short_version="2.3.0")
    v231 = asc.add_version(
        IOS_APP, "2.3.1", state="PENDING_DEVELOPER_RELEASE", build_id=approved.id
    )
    train.add_phased(v231.id)
    v230 = asc.add_version(IOS_APP, "2.3.0", state="READY_FOR_DISTRIBUTION", build_id=live.id)
    train.add_phased(v230.id, "ACTIVE", day=3, paused_days=2)


@dataclass
class Sandbox:
    """The running fakes, and the settings that point the bot at them."""

    settings: dict[str, Any]
    znyx: FakeZnyx
    whop: FakeWhop
    asc: FakeAppStore


async def start_sandbox(stack: AsyncExitStack) -> dict[str, Any]:
    """Start the fakes (closed with `stack`); return the settings that point the bot at them."""
    return (await start_world(stack)).settings


async def start_world(stack: AsyncExitStack) -> Sandbox:
    """Start the fakes (closed with `stack`), seeded."""
    znyx, whop, asc = FakeZnyx(), FakeWhop(), FakeAppStore()
    key = ec.generate_private_key(ec.SECP256R1())  # a fresh API key for each sandbox run
    seed_znyx(znyx)
    seed_whop(whop)
    seed_appstore(asc, key)
    servers = [await stack.enter_async_context(WebServer(f.app())) for f in (znyx, whop, asc)]
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    settings = {
        "znyx_api_url": servers[0].url,
        "znyx_token": ZNYX_TOKEN,
        "whop_api_url": servers[1].url,
        "whop_api_key": WHOP_KEY,
        "asc_api_url": servers[2].url,
        "asc_issuer_id": ASC_ISSUER,
        "asc_key_id": ASC_KEY_ID,
        "asc_private_key": pem,
        "asc_private_key_path": None,
    }
    return Sandbox(settings, znyx, whop, asc)


ZNYX_UI_USAGE = (
    "promote <project> <source_env> | publish <project> <env>   "
    "act as someone using Znyx's own UI, not the bot (Znyx sends its webhook)"
)


def znyx_ui(znyx: FakeZnyx, user: str, words: list[str]) -> str:
    """`znyx-ui …` in the sandbox shell: change Znyx as its own UI would, outside the bot."""
    projects = CONFIG["znyx"]["projects"]
    if len(words) != 3 or words[0] not in ("promote", "publish") or words[1] not in projects:
        known = ", ".join(projects)
        return f"Usage: znyx-ui {ZNYX_UI_USAGE.split('   ')[0]} (projects: {known})"
    verb, alias, env = words
    project = projects[alias]
    if env not in znyx.projects[project]:
        return f"Znyx has no environment {env!r} in {alias} (dev, staging, prod)."
    by = f"ui:{user}"
    if verb == "publish":
        n = sum(len(bundles) for bundles in znyx.projects[project].values())
        bundle = znyx.ui_publish(project, env, f"sha256:ui{n}".ljust(71, "0"), by)
        where = env
    else:
        result = znyx.ui_promote(project, env, by)
        if isinstance(result, str):
            return f"Znyx refused: {result}."
        bundle, where = result, STAGES[STAGES.index(env) + 1]
    return (
        f"Znyx (its own UI, as {by}, not promote-bot): {alias} {where} is now v{bundle.version} "
        f"· {bundle.policy_hash[:19]}. Znyx sent its webhook."
    )


def rehearsal_config(own: dict[str, Any] | None) -> dict[str, Any]:
    """The sandbox config, or the caller's role map and policies over the sandbox's providers."""
    if own is None:
        return CONFIG
    merged = {k: v for k, v in own.items() if k not in PROVIDERS}
    merged.update({k: CONFIG[k] for k in PROVIDERS})
    return merged


EXAMPLES = {  # a first command for each provider, in the sandbox's world
    "znyx": "/promote znyx guardrails staging",
    "whop": "/promote whop apbu_ios151",
    "appstore": "/promote appstore ios 2.4.0 153",
}


def first_user(rules: Rules, own: bool) -> str:
    """Whom the sandbox starts as: U_ALICE in its own world; with the caller's config, the
    first person it lists whose roles grant a scope (else the first it lists, else U_ALICE)."""
    if not own:
        return "U_ALICE"
    members = list(rules.role_map.members)
    acting = [u for u in members if rules.role_map.scopes_of(u)]
    return (acting or members or ["U_ALICE"])[0]


def _roles(rules: Rules, user: str) -> str:
    return ", ".join(rules.role_map.roles_of(user)) or "no role"


def banner(rules: Rules, user: str, source: str | None = None) -> str:
    """The greeting: the fakes, the people (the sandbox's, or those of the config at
    `source`), who you are, how to switch, and what to try as that person."""
    lines = ["promote-bot sandbox: fake Znyx, Whop and App Store Connect on this machine."]
    if source is None:
        lines.append("People:")
        lines += [f"  {who:<10} {role}" for who, role in USERS.items()]
    else:
        role_map = rules.role_map
        lines.append(f"People, with their roles in {source}:")
        lines += [f"  {who:<10} {', '.join(roles)}" for who, roles in role_map.members.items()]
        lines += [
            f"  group {group}: {', '.join(roles)} (its members are unknown here: no role)"
            for group, roles in role_map.groups.items()
        ]
        if not role_map.members:
            lines.append(f"  nobody: {source} has no [members]; add some to rehearse them")
    people = [u for u in (USERS if source is None else rules.role_map.members) if u != user]
    others = [u for u in people if rules.role_map.scopes_of(u)] or people
    switch = f"switch with: as {others[0]}" if others else "switch with: as <user id>"
    lines.append(f"You are {user} ({_roles(rules, user)}); {switch}.")
    scopes = rules.role_map.scopes_of(user)
    tries = [
        example
        for name, example in EXAMPLES.items()
        if (p := rules.provider(name)) is not None and any(f.scope in scopes for f in p.forms)
    ]
    if source is None:
        lines += [
            "Try: /promote znyx guardrails staging   then: as U_BOB   then: approve 1",
            "     /promote whop apbu_ios151   /promote appstore ios 2.4.0 153   help",
            "     once one succeeded: rollback 1   or: /promote znyx guardrails activate prod 1",
            "     a change outside the bot: znyx-ui promote guardrails staging",
            "The App Store release train (app ios):",
            "     /promote appstore testflight ios 155 External Testers   (beta review included)",
            "     /promote appstore submit ios 2.4.0   /promote appstore release ios 2.3.1",
            "     /promote appstore phased ios 2.3.0 pause|resume|complete",
        ]
    elif tries:
        tries.append("help")
        lines += [
            ("Try: " if n == 0 else "     ") + "   ".join(tries[n : n + 2])
            for n in range(0, len(tries), 2)
        ]
    else:
        lines.append(f"Try: help   ({user} may request nothing here: `as` someone who may)")
    return "\n".join(lines)
