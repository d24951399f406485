"""Tab completion in the shell: read off the usage lines, filled from the config and the store."""

from __future__ import annotations

from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document

from bot.config import parse_config
from bot.core.model import State
from bot.core.ports import StoreError
from bot.sandbox.world import CONFIG
from bot.transports.shell_complete import ShellCompleter, find_requests
from tests.shell_sandbox import sandbox_shell

RULES = parse_config(CONFIG, source="sandbox")


def offered(completer: ShellCompleter, typed: str) -> list[str]:
    found = completer.get_completions(Document(typed), CompleteEvent(completion_requested=True))
    return [c.text for c in found]


def by_config(people: tuple[str, ...] = ("U_BOB", "U_CAROL")) -> ShellCompleter:
    return ShellCompleter(lambda: RULES, lambda states: [], lambda: people)


def test_commands_providers_and_verbs() -> None:
    completer = by_config()
    assert offered(completer, "") == [
        "/promote",
        "approve",
        "reject",
        "cancel",
        "rollback",
        "as",
        "whoami",
        "help",
        "exit",
    ]
    assert offered(completer, "a") == ["approve", "as"]
    assert offered(completer, "/pro") == ["/promote"]
    assert offered(completer, "/promote ")[:3] == ["znyx", "whop", "appstore"]
    assert {"status", "history", "cancel", "pending", "locks", "lock", "unlock"} <= set(
        offered(completer, "/promote ")
    )
    assert offered(completer, "/promote lo") == ["locks", "lock"]
    assert offered(completer, "promote z") == ["znyx"]  # without the slash, as the shell takes it
    assert "as" not in offered(by_config(people=()), "")  # no one to switch to


def test_aliases_and_environments_from_the_config() -> None:
    completer = by_config()
    assert offered(completer, "/promote znyx ") == ["guardrails", "bundles"]
    assert offered(completer, "/promote znyx bundles guardrails ") == ["dev", "staging", "prod"]
    assert offered(completer, "/promote whop ") == ["storefront", "builds"]
    assert offered(completer, "/promote whop builds ") == ["storefront"]  # a look: no flag
    assert offered(completer, "/promote znyx guardrails ") == ["dev", "staging", "activate"]
    assert offered(completer, "/promote znyx guardrails activate ") == ["dev", "staging", "prod"]
    assert offered(completer, "/promote znyx guardrails activate p") == ["prod"]
    assert offered(completer, "/promote whop storefront ") == []  # a build id: anything
    assert offered(completer, "/promote appstore ")[:3] == ["ios", "expire", "encryption"]
    assert {"testflight", "submit", "release", "phased"} <= set(
        offered(completer, "/promote appstore ")
    )  # the release train's forms, with nothing added for them here
    assert offered(completer, "/promote appstore phased ios 2.3.0 ") == [
        "pause",
        "resume",
        "complete",
    ]
    assert offered(completer, "/promote appstore expire ") == ["ios"]
    assert offered(completer, "/promote appstore encryption ios 153 ") == ["exempt", "non-exempt"]
    assert offered(completer, "/promote appstore encryption ios 153 non") == ["non-exempt"]


def test_break_glass_once_a_command_is_whole() -> None:
    completer = by_config()
    assert offered(completer, "/promote znyx guardrails staging ") == ["--emergency", "--at"]
    assert offered(completer, "/promote whop storefront apbu_ios151 --") == ["--emergency", "--at"]
    assert offered(completer, "/promote whop storefront apbu_ios151 --a") == ["--at"]
    assert offered(completer, "/promote znyx guardrails staging --emergency ") == []


def test_targets_patterns_and_people() -> None:
    completer = by_config()
    history = offered(completer, "/promote history ")
    assert history[:3] == ["znyx:guardrails:dev", "znyx:guardrails:staging", "znyx:guardrails:prod"]
    assert "whop:storefront" in history and "appstore:ios" in history
    assert "znyx:*" in offered(completer, "/promote lock ")
    assert offered(completer, "/promote lock znyx:g") == [
        "znyx:guardrails:dev",
        "znyx:guardrails:staging",
        "znyx:guardrails:prod",
    ]
    assert offered(completer, "/promote lock znyx:* ") == []  # the reason is free text
    assert offered(completer, "/promote approve 12 ") == []  # so is a comment
    assert offered(completer, "reject 12 ") == []
    assert offered(completer, "as U_") == ["U_BOB", "U_CAROL"]


def test_a_database_that_fails_offers_no_numbers_and_breaks_nothing() -> None:
    def failing(states: object) -> list:
        raise StoreError("PROMOTE_BOT_DB: the database is unreachable")

    completer = ShellCompleter(lambda: RULES, failing, lambda: ())
    assert offered(completer, "approve ") == []


async def test_request_numbers_open_ones_first() -> None:
    said: list[str] = []
    async with sandbox_shell(said.append) as sandbox:
        shell = sandbox.shell
        for line in (
            "/promote znyx guardrails staging",  # 1
            "as U_BOB",
            "approve 1",  # 1 succeeds
            "/promote whop apbu_ios151",  # 2 stays pending
            "/promote znyx guardrails dev",  # 3
            "/promote cancel 3",  # 3 ends cancelled
        ):
            await shell.handle(line)
        store = sandbox.workflow.store
        assert [store.get(n).state for n in (1, 2, 3)] == [  # type: ignore[union-attr]
            State.SUCCEEDED,
            State.PENDING,
            State.CANCELLED,
        ]
        completer = ShellCompleter(
            lambda: sandbox.workflow.rules, lambda states: find_requests(store, states), tuple
        )
        assert offered(completer, "approve ") == ["2"]
        assert offered(completer, "reject ") == ["2"]
        assert offered(completer, "/promote cancel ") == ["2"]
        assert offered(completer, "cancel ") == ["2"]
        assert offered(completer, "/promote approve ") == ["2"]
        assert offered(completer, "rollback ") == ["1"]
        assert offered(completer, "/promote rollback ") == ["1"]
        assert offered(completer, "/promote status ") == ["2", "3", "1"]  # open, then newest
        found = completer.get_completions(Document("approve "), CompleteEvent())
        assert [c.display_meta_text for c in found] == [
            "pending · storefront app build apbu_ios151 → production"
        ]

        await shell.handle("rollback 1")  # 4: pending, it undoes 1
        await shell.handle("as U_ALICE")
        await shell.handle("approve 4")
        assert store.get(1).rolled_back_by == 4  # type: ignore[union-attr]
        assert offered(completer, "rollback ") == ["4"]  # 1 can't be rolled back twice
