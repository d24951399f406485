"""Znyx policy bundles (provider-docs 003 and znyx-bundles.yml).

Promote moves the active bundle of a project one stage: dev → staging → prod. The preview
reads the active bundle of both environments so approvers see what will change. Activate makes
an explicit version of an environment active again: how a promotion is rolled back.
`/promote znyx bundles <project> [<env>]` lists the bundles there are.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime
from typing import ClassVar, Literal

import httpx
from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)

from bot.core.commands import WORD, UsageError, closest, did_you_mean, shown, unknown
from bot.core.errors import ProviderError, ProviderNotFound, ProviderUncertain
from bot.core.model import (
    Action,
    Drift,
    Fact,
    Listing,
    Outcome,
    Preview,
    Query,
    Sighting,
    moved,
    not_done,
    not_sent,
    unclear,
)
from bot.core.rules import CommandForm
from bot.core.steps import Steps
from bot.core.timing import Live
from bot.providers.http import BearerProvider, segment, unreadable
from bot.providers.spec import ProviderSettings, ProviderSpec, Section, aliases

NAME = "znyx"
LABEL = "Znyx"
SCOPE = "bundle:publish"
STAGES: tuple[str, ...] = ("dev", "staging", "prod")
ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")  # org and project ids

# --- what people ask for ---------------------------------------------------------------


class ZnyxPromote(Action):
    """Move the active policy bundle of a Znyx project one stage forward."""

    kind: Literal["znyx.promote"] = "znyx.promote"
    provider: ClassVar[str] = NAME
    scope: ClassVar[str] = SCOPE
    org_id: str
    project: str  # the alias people type
    project_id: str
    source_env: str

    @property
    def target_env(self) -> str:
        return STAGES[STAGES.index(self.source_env) + 1]

    @property
    def target(self) -> str:
        return f"{NAME}:{self.project}:{self.target_env}"

    @property
    def title(self) -> str:
        return f"{self.project} policy bundle: {self.source_env} → {self.target_env}"

    @property
    def thing(self) -> str:
        return f"{NAME}:{self.project_id}:{self.target_env}"

    @property
    def source(self) -> str:
        return f"{NAME}:{self.project_id}:{self.source_env}"

    @property
    def source_name(self) -> str:
        return self.source_env

    @property
    def watches(self) -> tuple[str, ...]:
        return (self.thing, f"{NAME}:{self.project_id}:{self.source_env}")


class ZnyxActivate(Action):
    """Make an explicit bundle version of an environment its active bundle (`undoing` set:
    the rollback of a promotion, valid only while the version it installed is active)."""

    kind: Literal["znyx.activate"] = "znyx.activate"
    provider: ClassVar[str] = NAME
    scope: ClassVar[str] = SCOPE
    doing: ClassVar[str] = "Activating"
    done: ClassVar[str] = "Activated"
    org_id: str
    project: str  # the alias people type
    project_id: str
    env: str
    version: int

    @property
    def target(self) -> str:
        return f"{NAME}:{self.project}:{self.env}"

    @property
    def title(self) -> str:
        return f"{self.project} policy bundle: activate v{self.version} in {self.env}"

    @property
    def thing(self) -> str:
        return f"{NAME}:{self.project_id}:{self.env}"


ZnyxAction = ZnyxPromote | ZnyxActivate


class ZnyxBundles(Query):
    """The bundles of a project's environments: versions, policy hashes, the active one."""

    provider: ClassVar[str] = NAME
    scope: ClassVar[str] = SCOPE
    org_id: str
    project: str
    project_id: str
    envs: tuple[str, ...]


SLACK_CHANNEL = re.compile(r"^[CG][A-Z0-9_]{2,}$")


class ZnyxSection(Section):
    """`[znyx]`: the org, short names for its projects, and the channel where the bot tells
    what it sees of Znyx by itself: changes made outside it (from Znyx's webhooks), and the
    promotions it asks for itself (`auto = true`)."""

    org: str
    projects: dict[str, str] = Field(default_factory=dict)
    channel: str | None = None

    @field_validator("channel")
    @classmethod
    def _channel(cls, v: str | None) -> str | None:
        if v is not None and not SLACK_CHANNEL.match(v):
            raise ValueError(f"{v!r} is not a Slack channel id (like C012AB3CD)")
        return v

    @field_validator("org")
    @classmethod
    def _org(cls, v: str) -> str:
        if not ID.match(v):
            raise ValueError(f"{v!r} is not a Znyx org id")
        return v

    @field_validator("projects")
    @classmethod
    def _projects(cls, v: dict[str, str]) -> dict[str, str]:
        return aliases(v, ID, "a Znyx project id")


class ZnyxSettings(ProviderSettings):
    znyx_api_url: AnyHttpUrl = AnyHttpUrl("https://api.znyx.ai")
    znyx_token: SecretStr | None = None
    znyx_webhook_secret: SecretStr | None = None  # unset: POST /webhooks/znyx is 404


USAGE = "/promote znyx <project> <source_env>   e.g. /promote znyx guardrails staging"
ACTIVATE_USAGE = (
    "/promote znyx <project> activate <env> <version>"
    "   e.g. /promote znyx guardrails activate prod 7"
)
BUNDLES_USAGE = (
    "/promote znyx bundles <project> [<env>]   e.g. /promote znyx bundles guardrails prod"
)
_VERSION = re.compile(r"^[vV]?([0-9]{1,9})$")
LISTED = 10  # bundles `znyx bundles` shows of each environment, newest first


class ZnyxRules:
    """The `/promote znyx …` grammar and target names, under one `[znyx]` section."""

    name = NAME
    label = LABEL
    forms = (
        CommandForm(SCOPE, USAGE, "promote a Znyx policy bundle one stage"),
        CommandForm(SCOPE, ACTIVATE_USAGE, "make an explicit bundle version active"),
        CommandForm(
            SCOPE, BUNDLES_USAGE, "the bundles of a project: versions, hashes, active", look=True
        ),
    )

    def __init__(self, section: ZnyxSection) -> None:
        self.section = section
        self._by_id = {pid: alias for alias, pid in section.projects.items()}

    def _project(self, project: str, usage: str) -> str:
        """The alias of a project given by alias or id."""
        if not WORD.match(project):
            raise UsageError(f"{shown(project)} is not a project name.", usage)
        projects = self.section.projects
        alias = project if project in projects else self._by_id.get(project)
        if alias is None:
            if closest(project, ["bundles"]):  # `znyx bundels …`: the command misspelt
                raise UsageError(
                    f"Unknown Znyx project or command {shown(project)}. "
                    "Did you mean `znyx bundles`?",
                    BUNDLES_USAGE,
                )
            raise unknown("Znyx project", project, projects, usage)
        return alias

    @staticmethod
    def _env(word: str, usage: str) -> str:
        env = word.lower()
        if env not in STAGES:
            raise UsageError(
                f"Unknown environment {shown(word)}.{did_you_mean(env, STAGES)} "
                f"Environments: {', '.join(STAGES)}.",
                usage,
            )
        return env

    def parse(self, args: list[str]) -> ZnyxAction | ZnyxBundles:
        if args and args[0].lower() == "bundles":
            return self._parse_bundles(args[1:])
        if len(args) == 4 and args[1].lower() != "activate" and closest(args[1], ["activate"]):
            raise UsageError(
                f"Unknown Znyx command {shown(args[1])}. Did you mean `activate`?", ACTIVATE_USAGE
            )
        if len(args) >= 2 and args[1].lower() == "activate":
            return self._parse_activate(args)
        if len(args) != 2:
            raise UsageError(
                "`znyx` takes a project and a source environment.", f"{USAGE}\n{ACTIVATE_USAGE}"
            )
        project, source = args
        alias = self._project(project, USAGE)
        projects = self.section.projects
        env = self._env(source, USAGE)
        if env == STAGES[-1]:
            raise UsageError(
                f"`{env}` is the last stage: there is nothing to promote it to. "
                "Name the stage to promote *from*: dev (→ staging) or staging (→ prod).",
                USAGE,
            )
        return ZnyxPromote(
            org_id=self.section.org, project=alias, project_id=projects[alias], source_env=env
        )

    def _parse_bundles(self, args: list[str]) -> ZnyxBundles:
        if len(args) not in (1, 2):
            raise UsageError(
                "`znyx bundles` takes a project, and an environment if you like.", BUNDLES_USAGE
            )
        alias = self._project(args[0], BUNDLES_USAGE)
        envs = (self._env(args[1], BUNDLES_USAGE),) if len(args) == 2 else STAGES
        return ZnyxBundles(
            org_id=self.section.org,
            project=alias,
            project_id=self.section.projects[alias],
            envs=envs,
        )

    def _parse_activate(self, args: list[str]) -> ZnyxActivate:
        if len(args) != 4:
            raise UsageError(
                "`znyx <project> activate` takes an environment and a version.", ACTIVATE_USAGE
            )
        project, _, env_word, version_word = args
        alias = self._project(project, ACTIVATE_USAGE)
        env = self._env(env_word, ACTIVATE_USAGE)
        match = _VERSION.match(version_word)
        if match is None or int(match.group(1)) < 1:
            raise UsageError(
                f"{shown(version_word)} is not a bundle version (a number, like 7).",
                ACTIVATE_USAGE,
            )
        return ZnyxActivate(
            org_id=self.section.org,
            project=alias,
            project_id=self.section.projects[alias],
            env=env,
            version=int(match.group(1)),
        )

    def rollback(self, action: Action, outcome: Outcome) -> ZnyxActivate | str:
        """Activate again, in the environment it changed, the version that was active before."""
        if not isinstance(action, ZnyxPromote | ZnyxActivate):
            return "it is not a Znyx bundle change"
        env = action.target_env if isinstance(action, ZnyxPromote) else action.env
        before, installed = outcome.before.get("version"), outcome.installed.get("version")
        if before is None or not installed:
            return (
                "the bot has no record of the bundle it replaced (it was read back after a restart)"
            )
        if not before:
            return f"{env} had no active bundle before it, and Znyx can't deactivate one"
        return ZnyxActivate(
            org_id=action.org_id,
            project=action.project,
            project_id=action.project_id,
            env=env,
            version=int(before),
            undoing=installed,
        )

    def stage_promotion(self, target: str) -> ZnyxPromote | None:
        """`znyx:<project>:staging` ← dev, `…:prod` ← staging; dev has no stage before it."""
        name, _, rest = target.partition(":")
        project, _, env = rest.partition(":")
        projects = self.section.projects
        if name != NAME or project not in projects or env not in STAGES[1:]:
            return None
        source = STAGES[STAGES.index(env) - 1]
        project_id = projects[project]
        org = self.section.org
        return ZnyxPromote(org_id=org, project=project, project_id=project_id, source_env=source)

    def help_line(self) -> str:
        projects = ", ".join(sorted(self.section.projects)) or "none"
        return f"Znyx projects: {projects}. Stages: {' → '.join(STAGES)}."

    def targets(self) -> list[str]:
        return [f"{NAME}:{p}:{env}" for p in self.section.projects for env in STAGES]

    def choices(self, placeholder: str) -> list[str]:
        words = {"project": sorted(self.section.projects), "env": list(STAGES)}
        words["source_env"] = list(STAGES[:-1])  # the last stage has none to go to
        return words.get(placeholder, [])


# --- what Znyx says ----------------------------------------------------------------------


class Bundle(BaseModel):
    """BundleResponse; unknown fields from newer API versions are ignored."""

    model_config = ConfigDict(extra="ignore")

    id: str
    version: int
    policy_hash: str
    is_active: bool
    published_by: str | None = None
    published_at: str


def short_hash(policy_hash: str) -> str:
    algo, _, digest = policy_hash.rpartition(":")
    return f"{algo + ':' if algo else ''}{digest[:12]}"


def describe(bundle: Bundle | None) -> str:
    if bundle is None:
        return "no active bundle"
    return f"v{bundle.version} · {short_hash(bundle.policy_hash)}"


def error_detail(response: httpx.Response) -> str | None:
    """Znyx errors are FastAPI-style: `{"detail": str | object | [{loc, msg, type}]}`."""
    detail = response.json().get("detail")
    if isinstance(detail, list):
        return "; ".join(
            ".".join(str(p) for p in item.get("loc", [])) + ": " + str(item.get("msg", ""))
            for item in detail
            if isinstance(item, dict)
        )
    return None if detail is None else str(detail)


class ZnyxProvider(BearerProvider):
    name = NAME
    label = LABEL
    credential = "ZNYX_TOKEN"
    scope = SCOPE
    error_detail = staticmethod(error_detail)

    @staticmethod
    def _env_path(action: ZnyxAction | ZnyxBundles, env: str) -> str:
        return _path(action.org_id, action.project_id, env)

    async def active_bundle(self, action: ZnyxAction, env: str) -> Bundle | None:
        """The active bundle of `env`, or None when it has none."""
        return next((b for b in await self.bundles(action, env) if b.is_active), None)

    async def bundles(self, action: ZnyxAction | ZnyxBundles, env: str) -> list[Bundle]:
        return await self._bundles(action.org_id, action.project_id, action.project, env)

    async def _bundles(self, org_id: str, project_id: str, project: str, env: str) -> list[Bundle]:
        response = await self.http.call(
            "GET",
            _path(org_id, project_id, env) + "/bundles",
            idempotent=True,
            explain={404: f"Znyx has no environment {env} in {project}"},
        )
        try:
            return [Bundle.model_validate(b) for b in response.json()]
        except (ValueError, TypeError, ValidationError) as exc:
            raise ProviderError(
                "Znyx", f"Znyx sent an unreadable bundle list: {unreadable(exc)}"
            ) from exc

    async def show(self, query: ZnyxBundles) -> Listing:
        """`znyx bundles`: each environment's bundles, newest first, the active one marked."""
        read = await asyncio.gather(
            *(self.bundles(query, env) for env in query.envs), return_exceptions=True
        )
        rows: list[tuple[str, ...]] = []
        notes: list[str] = []
        for env, found in zip(query.envs, read, strict=True):
            if isinstance(found, ProviderNotFound) and len(query.envs) > 1:
                notes.append(f"{query.project} has no {env} environment.")
                continue
            if isinstance(found, BaseException):
                raise found
            newest = sorted(found, key=lambda b: b.version, reverse=True)
            active = next((b for b in newest if b.is_active), None)
            shown = newest[:LISTED] + [b for b in newest[LISTED:] if b is active]
            rows += [_bundle_row(env, b) for b in shown]
            if len(newest) > len(shown):
                notes.append(
                    f"{env}: the newest {LISTED} of {len(newest)} bundles, and the active one."
                )
            if active is None:
                notes.append(f"No bundle is active in {env}.")
        columns = ("env", "version", "policy hash", "active", "published", "by")
        title = f"Znyx bundles of {query.project}" + (
            f" in {query.envs[0]}" if len(query.envs) == 1 else ""
        )
        return Listing(title, columns, tuple(rows), tuple(notes))

    async def preview(self, action: ZnyxAction) -> Preview:
        if isinstance(action, ZnyxActivate):
            return await self._preview_activate(action)
        src, dst = action.source_env, action.target_env
        # Both environments are read at once: one round trip to Znyx instead of two.
        source, current = await asyncio.gather(
            self.active_bundle(action, src),
            self.active_bundle(action, dst),
            return_exceptions=True,
        )
        if isinstance(source, BaseException):
            raise source
        if source is None:
            return Preview(
                refusal=f"Nothing to promote: {action.project} has no active bundle in {src}."
            )
        promoting = Fact(
            label="Promoting",
            value=f"{src} {describe(source)} → becomes the active bundle of {dst} (a new version)",
        )
        expect = {"source": describe(source), "source_hash": source.policy_hash}
        if isinstance(current, ProviderError):
            warning = f"Couldn't read {dst}: {current.message}"
            return Preview(facts=[promoting], warnings=[warning], expect=expect)
        if isinstance(current, BaseException):
            raise current
        if current is not None and current.policy_hash == source.policy_hash:
            return Preview(
                refusal=f"{dst} already runs this policy hash ({describe(current)}): promoting "
                f"{src} {describe(source)} would only make a new version with the same policies."
            )
        expect |= {
            "destination": _now(current),
            "destination_id": current.id if current else "",
            "destination_version": str(current.version) if current else "0",
        }
        facts = [Fact(label=f"Active in {dst} now", value=describe(current)), promoting]
        return Preview(facts=facts, expect=expect)

    async def _moved(
        self, action: ZnyxPromote, expect: Mapping[str, str]
    ) -> tuple[Outcome | None, Bundle | None]:
        """Read both environments again right before the write: (None, the destination's
        active bundle) if they still show what the preview showed, else the `failed` outcome
        that says what changed (nothing sent)."""
        src, dst = action.source_env, action.target_env
        source, current = await asyncio.gather(  # both at once: one round trip, not two
            self.active_bundle(action, src),
            self.active_bundle(action, dst),
            return_exceptions=True,
        )
        if isinstance(current, ProviderNotFound) and "destination_id" not in expect:
            current = None  # the preview couldn't read it either: Znyx decides
        for read in (source, current):
            if isinstance(read, ProviderError):
                return not_sent(
                    f"couldn't read {action.project} before promoting ({read.message})"
                ), None
            if isinstance(read, BaseException):
                raise read
        drift = _drift_of(action, expect, source, current)
        if drift is not None:
            return drift.outcome(), current
        if source is not None and current is not None and current.policy_hash == source.policy_hash:
            return not_sent(f"{dst} already runs this policy hash ({describe(current)})"), current
        return None, current

    async def execute(
        self, action: ZnyxAction, *, promoted_by: str, expect: Mapping[str, str], steps: Steps
    ) -> Outcome:
        if isinstance(action, ZnyxActivate):
            return await self._execute_activate(action, expect, steps)
        moved, current = await self._moved(action, expect)
        if moved is not None:
            return moved
        outcome = await self.promote(action, promoted_by, steps)
        return outcome.model_copy(update={"before": _record(action.target_env, current)})

    async def promote(self, action: ZnyxPromote, promoted_by: str, steps: Steps) -> Outcome:
        """The write itself: Znyx copies the source's active bundle into the next stage."""
        src, dst = action.source_env, action.target_env
        response = await self.http.write(
            steps,
            "promote",
            "POST",
            self._env_path(action, src) + "/promote",
            json={"promoted_by": promoted_by},
            explain={
                400: f"Znyx has no stage after {src} for {action.project} (does {dst} exist?)",
                404: f"Znyx found no active bundle in {src} for {action.project} to promote",
            },
        )
        try:
            bundle = Bundle.model_validate(response.json())
        except (ValueError, ValidationError) as exc:
            raise ProviderUncertain(
                "Znyx", f"Znyx answered {response.status_code} with a body the bot can't read"
            ) from exc
        facts = _facts(bundle, src, dst)
        if not bundle.is_active:
            return Outcome(
                state="unknown",
                headline=f"Znyx made v{bundle.version} in {dst} but says it is not active",
                facts=facts,
                check=f"Check which bundle is active in {action.project} {dst}.",
            )
        return Outcome(
            state="succeeded",
            headline=f"{action.project} bundle v{bundle.version} is active in {dst}",
            facts=facts,
            installed=_record(dst, bundle),
        )

    # --- activate: an explicit version, or a rollback ----------------------------------

    async def _preview_activate(self, action: ZnyxActivate) -> Preview:
        env, n = action.env, action.version
        bundles = await self.bundles(action, env)
        current = next((b for b in bundles if b.is_active), None)
        chosen = next((b for b in bundles if b.version == n), None)
        if action.undoing is not None and _version(current) != action.undoing:
            return Preview(
                refusal=f"Something else was made active since: {env}'s active bundle is "
                f"{_now(current)} now, not v{action.undoing}, so there is nothing to roll back. "
                "Nothing was posted."
            )
        if chosen is None:
            known = ", ".join(f"v{b.version}" for b in bundles[-10:]) or "none"
            return Preview(
                refusal=f"{action.project} has no bundle v{n} in {env} (its versions: {known})."
            )
        if chosen.is_active:
            return Preview(
                refusal=f"v{n} is already the active bundle of {env}: {describe(chosen)}."
            )
        published = f"published {chosen.published_at.replace('T', ' ')[:16]}"
        if chosen.published_by:
            published += f" by {chosen.published_by}"
        facts = [
            Fact(label=f"Active in {env} now", value=describe(current)),
            Fact(label="Activating", value=f"{describe(chosen)} ({published})"),
        ]
        warnings = []
        if current is not None and current.policy_hash == chosen.policy_hash:
            warnings.append(f"v{n} has the same policy hash as the active bundle of {env}.")
        expect = {"destination": _now(current), "destination_id": current.id if current else ""}
        return Preview(facts=facts, warnings=warnings, expect=expect)

    async def _execute_activate(
        self, action: ZnyxActivate, expect: Mapping[str, str], steps: Steps
    ) -> Outcome:
        env, n = action.env, action.version
        try:
            bundles = await self.bundles(action, env)
        except ProviderError as exc:
            return not_sent(
                f"couldn't read {action.project} {env} before activating ({exc.message})"
            )
        current = next((b for b in bundles if b.is_active), None)
        drift = _destination_drift(env, expect, current)
        if drift is not None:
            return drift.outcome()
        chosen = next((b for b in bundles if b.version == n), None)
        if chosen is None:
            return not_sent(f"{action.project} has no bundle v{n} in {env} any more")
        if chosen.is_active:
            return not_sent(f"v{n} is already the active bundle of {env}")
        response = await self.http.write(
            steps,
            "activate",
            "POST",
            self._env_path(action, env) + f"/bundles/{n}/activate",
            explain={404: f"Znyx has no bundle v{n} in {env} of {action.project}"},
        )
        try:
            bundle = Bundle.model_validate(response.json())
        except (ValueError, ValidationError) as exc:
            raise ProviderUncertain(
                "Znyx", f"Znyx answered {response.status_code} with a body the bot can't read"
            ) from exc
        facts = [
            Fact(label="Bundle", value=bundle.id),
            Fact(label="Version", value=str(bundle.version)),
            Fact(label="Policy hash", value=bundle.policy_hash),
            Fact(label="Environment", value=env),
            Fact(label="Replaced", value=_now(current)),
        ]
        if not bundle.is_active or bundle.version != n:
            return Outcome(
                state="unknown",
                headline=f"Znyx answered, but does not show v{n} active in {env}",
                facts=facts,
                check=f"Check which bundle is active in {action.project} {env}.",
            )
        return Outcome(
            state="succeeded",
            headline=f"{action.project} bundle v{n} is active in {env}",
            facts=facts,
            before=_record(env, current),
            installed=_record(env, bundle),
        )

    async def stage_live(self, action: Action) -> Live | None:
        """The source environment's active bundle, live there since it was published (Znyx's
        `published_at`: for a version made active again, that is when it was first published,
        so the bot's own record of the environment counts too)."""
        if not isinstance(action, ZnyxPromote):
            return None
        active = await self.active_bundle(action, action.source_env)
        return Live(
            thing=action.source,
            place=action.source_env,
            key=active.id if active else "",
            shown=_now(active),
            since=_published(active),
        )

    async def observe(
        self, action: ZnyxAction, *, promoted_by: str, expect: Mapping[str, str], steps: Steps
    ) -> Outcome:
        """Compare the destination with what it showed before the write: a newer active
        version with the source's policy hash means it was done. Znyx's list need not echo
        `promoted_by`; when it does, that settles it too. An activation publishes nothing:
        whether its version is active is what can be read."""
        if isinstance(action, ZnyxActivate):
            active = await self.active_bundle(action, action.env)
            if active is not None and active.version == action.version:
                return Outcome(
                    state="succeeded",
                    headline=f"{action.project} bundle v{action.version} is active in {action.env}",
                    facts=[Fact(label="Active now", value=describe(active))],
                )
            what = f"{action.env}'s active bundle is {_now(active)}"
            if (active.id if active else "") == expect.get("destination_id"):
                return not_done(what)
            return unclear(LABEL, what, f"Check which bundle is active in {action.project}")
        src, dst = action.source_env, action.target_env
        bundles = await self.bundles(action, dst)
        active = next((b for b in bundles if b.is_active), None)
        mine = next((b for b in bundles if b.published_by == promoted_by), None)
        if mine is None and active is not None and self._only_new(active, bundles, expect):
            mine = active  # Znyx's list does not say who published: the one new bundle
        if mine is not None:
            before: dict[str, str] = {}
            if "destination_id" in expect:  # what the write replaced: what a rollback restores
                version = expect.get("destination_version", "0")
                shown = expect.get("destination", "none")
                before = {"env": dst, "version": "" if version == "0" else version, "shown": shown}
            # Only what this request installed is recorded: a rollback must find it active.
            done = Outcome(
                state="succeeded",
                headline=f"{action.project} bundle v{mine.version} is active in {dst}",
                facts=_facts(mine, src, dst),
                before=before,
                installed=_record(dst, mine) if before else {},
            )
            if mine.is_active:
                return done
            # It landed, and something else was made active since (CI publishing a hotfix).
            return done.model_copy(
                update={
                    "headline": f"{action.project} bundle v{mine.version} was made active in "
                    f"{dst}, and has been superseded since: {_now(active)} is active now",
                    "facts": [*done.facts, Fact(label=f"Active in {dst} now", value=_now(active))],
                }
            )
        what = f"{dst}'s active bundle is {_now(active)}"
        if "destination_id" in expect and (active.id if active else "") == expect["destination_id"]:
            return not_done(what)
        return unclear(LABEL, what, f"Check which bundle is active in {action.project} {dst}")

    @staticmethod
    def _only_new(active: Bundle, bundles: list[Bundle], expect: Mapping[str, str]) -> bool:
        """Whether `active`, read after an interrupted promotion from a list that does not say
        who published what, can only be that promotion's: it has the source's policy hash and
        is the one bundle of the destination newer than what it showed before the write. Two
        newer ones (CI published too) can't be told apart: then it is not taken for ours."""
        if active.policy_hash != expect.get("source_hash"):
            return False
        if active.id == expect.get("destination_id"):
            return False
        if "destination_version" not in expect:  # the preview could not read it: as before
            return True
        before = int(expect["destination_version"] or 0)
        return [b.id for b in bundles if b.version > before] == [active.id]

    # --- between promotions: what moved since a preview, what an environment shows ------

    async def drift(self, action: ZnyxAction, expect: Mapping[str, str]) -> Drift | None:
        """The reads of the preview again (both environments at once), compared as the write
        compares them before it is sent."""
        if not expect:
            return None
        if isinstance(action, ZnyxActivate):
            found = _destination_drift(
                action.env, expect, await self.active_bundle(action, action.env)
            )
            return found.model_copy(update={"thing": action.thing}) if found else None
        source, current = await asyncio.gather(
            self.active_bundle(action, action.source_env),
            self.active_bundle(action, action.target_env),
            return_exceptions=True,
        )
        if isinstance(current, ProviderNotFound) and "destination_id" not in expect:
            current = None  # the preview could not read it either
        for read in (source, current):
            if isinstance(read, BaseException):
                raise read
        assert not isinstance(source, BaseException) and not isinstance(current, BaseException)
        found = _drift_of(action, expect, source, current)
        if found is None:
            return None
        there = _destination_drift(action.target_env, expect, current) is not None
        return found.model_copy(update={"thing": action.thing if there else action.source})

    async def sightings(
        self,
        org_id: str,
        projects: Mapping[str, str],
        envs: Sequence[str],
        changed: Collection[str] = (),
    ) -> list[Sighting]:
        """The active bundle of each of `envs` in each of `projects` (alias → id), all read at
        once; an environment a project does not have is left out. Those of `changed` are the
        ones Znyx said changed (a promotion's destination), not only named."""
        places = [(alias, pid, env) for alias, pid in projects.items() for env in envs]
        reads = await asyncio.gather(
            *(self._bundles(org_id, pid, alias, env) for alias, pid, env in places),
            return_exceptions=True,
        )
        seen = []
        for (alias, pid, env), read in zip(places, reads, strict=True):
            if isinstance(read, ProviderNotFound):
                continue
            if isinstance(read, BaseException):
                raise read
            sighting = _sighting(alias, pid, env, read)
            seen.append(sighting.model_copy(update={"said_changed": env in changed}))
        return seen


def _now(bundle: Bundle | None) -> str:
    return describe(bundle) if bundle else "none"


def _published(bundle: Bundle | None) -> datetime | None:
    """When Znyx says `bundle` was published, if it says so readably (ISO 8601, UTC if bare)."""
    if bundle is None:
        return None
    try:
        at = datetime.fromisoformat(bundle.published_at.replace("Z", "+00:00"))
    except ValueError:
        return None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _path(org_id: str, project_id: str, env: str) -> str:
    return f"v1/orgs/{segment(org_id)}/projects/{segment(project_id)}/envs/{segment(env)}"


def _destination_drift(env: str, expect: Mapping[str, str], current: Bundle | None) -> Drift | None:
    """The environment's active bundle is not the one the preview showed."""
    return moved(
        LABEL,
        f"{env}'s active bundle",
        expect,
        "destination_id",
        current.id if current else "",
        then=expect.get("destination", "none"),
        shown=_now(current),
        by=current.published_by if current else None,
    )


def _drift_of(
    action: ZnyxPromote, expect: Mapping[str, str], source: Bundle | None, current: Bundle | None
) -> Drift | None:
    """What moved since the preview of a promotion: the destination's active bundle, or the
    policies of the source's."""
    return _destination_drift(action.target_env, expect, current) or moved(
        LABEL,
        f"{action.source_env}'s active bundle",
        expect,
        "source_hash",
        source.policy_hash if source else "",
        then=expect.get("source", "none"),
        shown=_now(source),
        by=source.published_by if source else None,
    )


def _version(bundle: Bundle | None) -> str:
    return str(bundle.version) if bundle else ""


def _record(env: str, bundle: Bundle | None) -> dict[str, str]:
    """An environment's active bundle, as an outcome's `before` or `installed` records it."""
    return {"env": env, "version": _version(bundle), "shown": _now(bundle)}


def _sighting(alias: str, project_id: str, env: str, bundles: list[Bundle]) -> Sighting:
    active = next((b for b in bundles if b.is_active), None)
    below = [b for b in bundles if active is not None and b.version < active.version]
    before = max(below, key=lambda b: b.version) if below else None
    return Sighting(
        provider=NAME,
        label=LABEL,
        thing=f"{NAME}:{project_id}:{env}",
        target=f"{NAME}:{alias}:{env}",
        place=f"{alias} {env}",
        key=active.id if active else "",
        shown=_now(active),
        by=active.published_by if active else None,
        at=active.published_at if active else None,
        record=_record(env, active),
        before=describe(before) if before else None,
    )


def _bundle_row(env: str, bundle: Bundle) -> tuple[str, ...]:
    published = bundle.published_at.replace("T", " ")[:16]
    active = "active" if bundle.is_active else ""
    by = bundle.published_by or "—"
    return (env, f"v{bundle.version}", short_hash(bundle.policy_hash), active, published, by)


def _facts(bundle: Bundle, src: str, dst: str) -> list[Fact]:
    return [
        Fact(label="Bundle", value=bundle.id),
        Fact(label="Version", value=str(bundle.version)),
        Fact(label="Policy hash", value=bundle.policy_hash),
        Fact(label="From → to", value=f"{src} → {dst}"),
        Fact(label="Published by", value=bundle.published_by or "—"),
    ]


def _client(settings: ZnyxSettings) -> ZnyxProvider:
    settings.required("znyx_token")
    assert settings.znyx_token is not None
    return ZnyxProvider.create(str(settings.znyx_api_url), settings.znyx_token.get_secret_value())


SPEC = ProviderSpec(
    name=NAME,
    label=LABEL,
    scopes={SCOPE: "promote a policy bundle one stage"},
    section=ZnyxSection,
    settings=ZnyxSettings,
    rules=ZnyxRules,
    client=_client,
    fake="bot.sandbox.znyx:FakeZnyx",
)
