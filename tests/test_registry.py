"""The provider registry: each provider is one module declaring its whole shape, and the core
knows providers only through the protocol it defines."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from bot.config import ConfigError, parse_config
from bot.core.commands import UsageError, parse
from bot.core.model import Action
from bot.providers.registry import PROVIDERS
from bot.providers.spec import ProviderSpec

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN_IN_CORE = (
    "bot.config",
    "bot.providers",
    "bot.transports",
    "bot.store",
    "bot.sandbox",
    "httpx",
    "aiohttp",
    "slack_bolt",
    "slack_sdk",
    "sqlite_utils",
    "sqlite3",
)


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", sorted((ROOT / "bot" / "core").glob("*.py")), ids=str)
def test_the_core_imports_no_transport_provider_store_or_config(path: Path) -> None:
    bad = {n for n in _imports(path) if n.startswith(FORBIDDEN_IN_CORE)}
    assert not bad, f"{path.name} imports {bad}"


@pytest.mark.parametrize("spec", PROVIDERS.values(), ids=lambda s: s.name)
def test_each_provider_declares_its_whole_shape(spec: ProviderSpec) -> None:  # type: ignore[type-arg]
    module, _, cls = spec.fake.partition(":")
    fake = getattr(importlib.import_module(module), cls)()
    assert callable(fake.app)  # its sandbox fake serves an HTTP API
    kinds = [k for k, c in Action._kinds.items() if c.provider == spec.name]
    assert kinds and all(k.startswith(spec.name + ".") for k in kinds)
    assert set(spec.scopes) >= {Action._kinds[k].scope for k in kinds}
    assert spec.settings.model_fields  # the environment variables it reads


def test_policy_patterns_follow_the_registry() -> None:
    rules = parse_config({"roles": {"rm": ["bundle:publish"]}})
    assert set(rules.unconfigured) == set(PROVIDERS)  # known, but none configured here
    with pytest.raises(ConfigError, match="'jenkins:\\*' is not a target pattern"):
        parse_config({"roles": {}, "policies": {"jenkins:*": {}}})


def test_an_unconfigured_provider_is_named_in_its_answer() -> None:
    rules = parse_config({"roles": {"rm": ["bundle:publish"]}})
    with pytest.raises(UsageError, match=r"Whop is not configured on this bot \(no \[whop\]"):
        parse("whop apbu_1", rules)
