"""The shell's core in-process, over the sandbox's fakes (real HTTP on loopback), as
`promote-bot shell --sandbox` wires it, for tests that drive the shell from the inside."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime

from bot.cli import build_providers
from bot.config import parse_config
from bot.core.workflow import Workflow, utc_now
from bot.sandbox import world
from bot.store import SqliteStore
from bot.transports.shell import Shell, ShellChat


@dataclass
class Clock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now


@dataclass
class SandboxShell:
    shell: Shell
    workflow: Workflow
    clock: Clock


@asynccontextmanager
async def sandbox_shell(write: Callable[[str], None]) -> AsyncIterator[SandboxShell]:
    """A shell as U_ALICE in the sandbox's world, printing with `write`, on a movable clock."""
    async with AsyncExitStack() as stack:
        overrides = await world.start_sandbox(stack)
        rules = parse_config(world.rehearsal_config(None), source="sandbox")
        providers = await build_providers(rules, overrides)
        for provider in providers.values():
            stack.push_async_callback(provider.aclose)
        store = SqliteStore()
        stack.callback(store.close)
        clock = Clock(utc_now())
        workflow = Workflow(rules, store, providers, ShellChat(write), clock=clock)
        yield SandboxShell(Shell(workflow, "U_ALICE", write), workflow, clock)
