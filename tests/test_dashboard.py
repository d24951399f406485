"""deploy/grafana-dashboard.json parses, has the panels it promises, and queries only metrics the
bot exports (as /metrics shows them: a counter's `_total`, a histogram's `_bucket`, …)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from bot.core.scheduler import Scheduler
from bot.metrics import Metrics
from bot.store import SqliteStore
from tests.history import seed, seed_beside

DASHBOARD = Path(__file__).resolve().parents[1] / "deploy" / "grafana-dashboard.json"
METRIC = re.compile(r"\bpromote_bot_[a-z_]+\b")
SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
}


async def _exported(tmp_path: Path) -> set[str]:
    """Every sample name the bot's /metrics can show, from a bot's own registry with a store
    and the scheduler's jobs watched (a family with no samples yet still says its type)."""
    store = SqliteStore(tmp_path / "bot.db")
    seed_beside(store, seed(store))
    metrics = Metrics()
    metrics.watch_store(store, "this-process")
    scheduler = Scheduler()
    scheduler.add("deliver", lambda: _nothing(), 2.0)
    metrics.watch_jobs(scheduler)
    await metrics.refresh(wait=True)
    text = (await metrics.scrape()).decode()
    store.close()
    names = set()
    for family in text_string_to_metric_families(text):
        names |= {family.name + suffix for suffix in SUFFIXES.get(family.type, ("",))}
    return names


async def _nothing() -> None:
    return None


def _queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        for target in panel["targets"]
    ]


async def test_every_metric_the_dashboard_queries_is_exported(tmp_path: Path) -> None:
    exported = await _exported(tmp_path)
    queried = {name for _, expr in _queries() for name in METRIC.findall(expr)}
    assert queried, "the dashboard queries nothing"
    assert queried <= exported, f"not exported: {sorted(queried - exported)}"
    # The measures the issue names are all there.
    for name in (
        "promote_bot_promotions_total",
        "promote_bot_rollbacks_total",
        "promote_bot_lead_time_seconds_bucket",
        "promote_bot_approval_wait_seconds_bucket",
        "promote_bot_time_to_restore_seconds_bucket",
        "promote_bot_requests",
        "promote_bot_ack_seconds_bucket",
        "promote_bot_provider_calls_total",
        "promote_bot_outside_changes_total",
        "promote_bot_previews_moved_total",
    ):
        assert name in queried, name


def test_the_dashboard_is_a_grafana_dashboard() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"
    titles = " | ".join(p["title"] for p in dashboard["panels"]).lower()
    for words in (
        "deployment frequency",
        "lead time",
        "change failure rate",
        "time to restore",
        "open requests by state",
        "ack latency",
        "provider errors",
    ):
        assert words in titles, words
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}"
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"])
        for target in panel["targets"]:
            expr = target["expr"]
            assert expr.count("(") == expr.count(")"), expr
            assert expr.count("{") == expr.count("}"), expr
            # Ranges are the dashboard's window or a few minutes: never a typo.
            for window in re.findall(r"\[([^\]]+)\]", expr):
                assert window in ("$window", "5m"), expr
