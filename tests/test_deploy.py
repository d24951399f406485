"""The deployment examples name only settings that exist, and probe the endpoints that do."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from bot.config import Settings
from bot.providers.registry import PROVIDERS

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
FILES = [
    DEPLOY / "docker-compose.yml",
    DEPLOY / "kubernetes.yml",
    DEPLOY / "promote-bot.env.example",
    ROOT / "Dockerfile",
]
SETTING = re.compile(r"\b(?:SLACK|ZNYX|WHOP|ASC|PROMOTE_BOT|LOG)_[A-Z_]*[A-Z]\b|\bPORT\b")
KNOWN = {name.upper() for name in Settings.model_fields} | {
    name.upper() for spec in PROVIDERS.values() for name in spec.settings.model_fields
}


def _docker_section() -> str:
    readme = (ROOT / "README.md").read_text()
    return readme.split("### With Docker", 1)[1].split("\n## ", 1)[0]


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_setting_a_deployment_file_names_exists(path: Path) -> None:
    named = set(SETTING.findall(path.read_text()))
    assert named, f"{path.name} names no setting"
    assert named <= KNOWN, f"{path.name} names unknown settings: {sorted(named - KNOWN)}"


def test_the_readme_docker_section_names_only_real_settings() -> None:
    named = set(SETTING.findall(_docker_section()))
    assert {"SLACK_BOT_TOKEN", "WHOP_API_KEY", "ASC_PRIVATE_KEY_PATH"} <= named
    assert named <= KNOWN, sorted(named - KNOWN)


def test_kubernetes_runs_two_socket_mode_replicas_with_probes_and_secrets() -> None:
    docs = list(yaml.safe_load_all((DEPLOY / "kubernetes.yml").read_text()))
    [deployment] = [d for d in docs if d["kind"] == "Deployment"]
    spec = deployment["spec"]
    assert spec["replicas"] == 2
    pod = spec["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 30
    [container] = pod["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    env = {e["name"]: e for e in container["env"]}
    assert "secretKeyRef" in env["SLACK_APP_TOKEN"]["valueFrom"]  # Socket Mode
    assert "secretKeyRef" in env["SLACK_BOT_TOKEN"]["valueFrom"]
    assert float(env["PROMOTE_BOT_SHUTDOWN_SECONDS"]["value"]) < 30


def test_compose_and_dockerfile_use_the_endpoints() -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    assert compose["services"]["bot"]["env_file"] == "promote-bot.env"
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "HEALTHCHECK" in dockerfile and "/healthz" in dockerfile


def test_compose_runs_the_bot_on_its_postgres_service() -> None:
    services = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())["services"]
    bot, postgres = services["bot"], services["postgres"]
    db = bot["environment"]["PROMOTE_BOT_DB"]
    assert db.startswith("postgresql://") and "@postgres:5432/" in db
    assert postgres["environment"]["POSTGRES_DB"] == db.rsplit("/", 1)[1]
    assert postgres["environment"]["POSTGRES_USER"] in db
    assert bot["depends_on"]["postgres"]["condition"] == "service_healthy"
