"""What people look at between decisions, read from the store: a request's status, the
history, what is pending for someone, and their App Home. Nothing here changes anything."""

from __future__ import annotations

import asyncio
from fnmatch import fnmatchcase

from bot.core import authz, render, stats, texts
from bot.core.commands import History, closest
from bot.core.context import Context
from bot.core.delivery import Delivery
from bot.core.errors import ProviderError
from bot.core.figures import TargetFigures
from bot.core.locking import Holds
from bot.core.markup import literal
from bot.core.model import Query, Reply, Request, State, kinds_for, providers_for

HISTORY_LIMIT = 20
HOME_EVENTS = 10


class ReadModels:
    def __init__(self, ctx: Context, delivery: Delivery, holds: Holds) -> None:
        self.ctx = ctx
        self.delivery = delivery
        self.holds = holds

    def status(self, request_id: int) -> Reply:
        """`/promote status`: state, approvals, policy, timeline and outcome."""
        store, rules = self.ctx.store, self.ctx.rules
        request = store.get(request_id)
        if request is None:
            return Reply(f"There is no request #{request_id}.")
        timeline = store.history(request_id=request.id, limit=100)
        policy = rules.policy_of(request)
        shown = self.delivery.view(request)
        return Reply(texts.status_text(request, policy, timeline, rules.role_map, shown))

    def history(self, asked: History) -> Reply:
        """`/promote history`: everything's, a request's, or that of the targets a pattern
        matches (in the store: also targets the config no longer has). A pattern that matches
        nothing here and never did is answered as such, with the targets there are."""
        store, rules = self.ctx.store, self.ctx.rules
        if asked.request_id is not None:
            if store.get(asked.request_id) is None:
                return Reply(f"There is no request #{asked.request_id}.")
            entries = store.history(request_id=asked.request_id, limit=HISTORY_LIMIT)
            return Reply(texts.history_text(entries, f"#{asked.request_id}"))
        entries = store.history(target=asked.target, limit=HISTORY_LIMIT)
        targets = [t for p in rules.providers.values() for t in p.targets()]
        pattern = asked.target
        if entries or pattern is None or any(fnmatchcase(t, pattern) for t in targets):
            return Reply(texts.history_text(entries, pattern))
        return Reply(texts.unknown_target_text(pattern, targets, closest(pattern, targets)))

    async def show(self, query: Query) -> Reply:
        """What a provider has (builds, bundles), read now; only the caller sees it."""
        provider = self.ctx.providers.get(query.provider)
        if provider is None:
            return Reply(f"{query.provider} is not configured on this bot.")
        try:
            listing = await provider.show(query)
        except ProviderError as exc:
            return Reply(f"{literal(exc.message)}.")  # the provider's words, as text
        return Reply(texts.listing_text(listing))

    def locks(self) -> Reply:
        return Reply(texts.locks_text(self.holds.view()))

    def pending(self, user: str) -> list[render.ListedRequest]:
        """The open requests `user` may act on (approve, reject or cancel), oldest first."""
        ctx = self.ctx
        rules = ctx.rules
        mine = []
        for request in ctx.store.in_states([State.PENDING, State.APPROVED]):
            if ctx.clock() >= request.expires_at:
                continue
            policy = rules.policy_of(request)
            if request.requester == user or authz.can_decide(rules.role_map, policy, request, user):
                mine.append(self._listed(request))
        return mine

    def home(self, user: str) -> render.HomeView:
        """What `user`'s App Home shows: requests waiting for their approval, their own open
        requests, the locks and freezes, and the last events."""
        ctx = self.ctx
        rules = ctx.rules
        waiting, mine = [], []
        for request in ctx.store.in_states([State.PENDING, State.APPROVED]):
            if ctx.clock() >= request.expires_at:
                continue
            policy = rules.policy_of(request)
            if request.requester == user:
                mine.append(self._listed(request))
            waits_for_them = request.state is State.PENDING and user not in request.approvers
            if waits_for_them and authz.can_approve(rules.role_map, policy, request, user):
                waiting.append(self._listed(request))
        # Events and holds are what `history` and `locks` show: only to people with a role.
        insider = bool(rules.role_map.scopes_of(user))
        return render.HomeView(
            user=user,
            waiting=tuple(waiting),
            mine=tuple(mine),
            holds=self.holds.view() if insider else render.holds_view([], (), ctx.clock()),
            events=tuple(ctx.store.history(limit=HOME_EVENTS)) if insider else (),
            notify=ctx.store.notify_enabled(user),
        )

    async def figures(
        self, user: str, days: int, pattern: str | None = None
    ) -> tuple[stats.Window, list[TargetFigures]]:
        """What the requests `user` may see (those of actions their scopes let them request
        or approve) that ended in the last `days` days add up to, per target. Counted by the
        database on a connection of its own, in a worker thread: a big database never holds
        up the bot's other work meanwhile."""
        ctx = self.ctx
        w = stats.window(ctx.clock(), days)
        kinds = kinds_for(ctx.rules.role_map.scopes_of(user))
        figures = await asyncio.to_thread(
            ctx.store.target_figures,
            w.since,
            w.until,
            pattern=pattern,
            kinds=kinds,
            providers=providers_for(kinds),
        )
        return w, figures

    async def stats(self, user: str, pattern: str | None, days: int) -> Reply:
        """`/promote stats`."""
        w, figures = await self.figures(user, days, pattern)
        return Reply(stats.stats_text(figures, w, pattern))

    def _listed(self, request: Request) -> render.ListedRequest:
        ts = request.message_ts
        link = self.ctx.chat.link(request.channel, ts) if ts else None
        return render.listed(request, self.delivery.view(request), link)
