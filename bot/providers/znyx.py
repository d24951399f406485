"""Znyx policy bundles (provider-docs 003 and znyx-bundles.yml).

Promote moves the active bundle of a project one stage: dev → staging → prod. The preview
reads the active bundle of both environments so approvers see what will change.
"""

from __future__ import annotations

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

from bot.core.errors import ProviderError, ProviderUncertain
from bot.core.model import Action, Fact, Outcome, Preview, Scope, ZnyxPromote
from bot.providers.http import BearerProvider, segment


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
    name = "znyx"
    label = "Znyx"
    credential = "ZNYX_TOKEN"
    scope = Scope.PUBLISH_BUNDLE.value
    error_detail = staticmethod(error_detail)

    @staticmethod
    def _env_path(action: ZnyxPromote, env: str) -> str:
        return (
            f"v1/orgs/{segment(action.org_id)}/projects/{segment(action.project_id)}"
            f"/envs/{segment(env)}"
        )

    async def active_bundle(self, action: ZnyxPromote, env: str) -> Bundle | None:
        """The active bundle of `env`, or None when it has none."""
        return next((b for b in await self.bundles(action, env) if b.is_active), None)

    async def bundles(self, action: ZnyxPromote, env: str) -> list[Bundle]:
        response = await self.http.call(
            "GET",
            self._env_path(action, env) + "/bundles",
            idempotent=True,
            explain={404: f"Znyx has no environment {env} in {action.project}"},
        )
        try:
            return [Bundle.model_validate(b) for b in response.json()]
        except (ValueError, TypeError, ValidationError) as exc:
            raise ProviderError("Znyx", f"Znyx sent an unreadable bundle list: {exc}") from exc

    async def preview(self, action: Action) -> Preview:
        assert isinstance(action, ZnyxPromote)
        source = await self.active_bundle(action, action.source_env)
        if source is None:
            return Preview(
                refusal=f"Nothing to promote: {action.project} has no active bundle in "
                f"{action.source_env}."
            )
        facts = [Fact(label=f"Will become active in {action.target_env}", value=describe(source))]
        warnings: list[str] = []
        try:
            current = await self.active_bundle(action, action.target_env)
        except ProviderError as exc:
            warnings.append(f"Couldn't read {action.target_env}: {exc.message}")
        else:
            facts.insert(
                0, Fact(label=f"Active in {action.target_env} now", value=describe(current))
            )
            if current is not None and current.policy_hash == source.policy_hash:
                warnings.append(
                    f"{action.target_env} already runs this policy hash; "
                    "promoting makes a new version with the same policies."
                )
        return Preview(facts=facts, warnings=warnings)

    async def execute(self, action: Action, *, promoted_by: str) -> Outcome:
        assert isinstance(action, ZnyxPromote)
        src, dst = action.source_env, action.target_env
        response = await self.http.call(
            "POST",
            self._env_path(action, src) + "/promote",
            idempotent=False,
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
        )

    async def observe(self, action: Action, *, promoted_by: str) -> Outcome:
        """Znyx records who published each bundle; `promoted_by` names one request."""
        assert isinstance(action, ZnyxPromote)
        dst = action.target_env
        mine = next(
            (b for b in await self.bundles(action, dst) if b.published_by == promoted_by), None
        )
        if mine is None:
            return Outcome(
                state="failed",
                headline=f"Znyx shows no bundle in {dst} promoted by this request",
            )
        return Outcome(
            state="succeeded",
            headline=f"{action.project} bundle v{mine.version} reached {dst}",
            facts=_facts(mine, action.source_env, dst),
        )


def _facts(bundle: Bundle, src: str, dst: str) -> list[Fact]:
    return [
        Fact(label="Bundle", value=bundle.id),
        Fact(label="Version", value=str(bundle.version)),
        Fact(label="Policy hash", value=bundle.policy_hash),
        Fact(label="From → to", value=f"{src} → {dst}"),
        Fact(label="Published by", value=bundle.published_by or "—"),
    ]
