"""The deployment examples name only settings that exist, probe the endpoints that do, and
start the bot with the example config: each file's environment (the image's, the env file's,
the compose file's or the Deployment's) and its mounts are read from the file, and `promote-bot
check-config` and `serve` run with them against a fake Slack (there is no Docker engine here)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import signal
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest
import yaml
from psycopg.conninfo import conninfo_to_dict

from bot.config import Settings
from bot.providers.registry import PROVIDERS
from bot.sandbox.slack import FakeSlack
from bot.web import WebServer
from tests.conftest import ASC_PEM, Output

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
FILES = [
    DEPLOY / "docker-compose.yml",
    DEPLOY / "kubernetes.yml",
    DEPLOY / "promote-bot.env.example",
    ROOT / "Dockerfile",
]
SETTING = re.compile(r"\b(?:SLACK|ZNYX|WHOP|ASC|PROMOTE_BOT|LOG)_[A-Z_]*[A-Z]\b|\bPORT\b")
PREFIXES = ("SLACK_", "ZNYX_", "WHOP_", "ASC_", "PROMOTE_BOT", "PORT", "LOG_", "PG")
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
    container = _deployment_container()
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    env = {e["name"]: e for e in container["env"]}
    assert "secretKeyRef" in env["SLACK_APP_TOKEN"]["valueFrom"]  # Socket Mode
    assert "secretKeyRef" in env["SLACK_BOT_TOKEN"]["valueFrom"]
    assert float(env["PROMOTE_BOT_SHUTDOWN_SECONDS"]["value"]) < 30


def test_compose_reads_the_env_file_and_config_from_where_the_readme_puts_them() -> None:
    """The checkout's root, next to each other: where `cp` puts them and `docker run` reads."""
    bot = _compose()["services"]["bot"]
    assert (DEPLOY / bot["env_file"]).resolve() == ROOT / "promote-bot.env"
    sources = {
        Path(v.split(":")[0]).name: (DEPLOY / v.split(":")[0]).resolve() for v in bot["volumes"]
    }
    assert sources["promote-bot.toml"] == ROOT / "promote-bot.toml"
    docker = _docker_section()
    assert "cp deploy/promote-bot.env.example promote-bot.env" in docker
    assert "cp promote-bot.example.toml promote-bot.toml" in docker
    assert "docker compose --env-file promote-bot.env -f deploy/docker-compose.yml up -d" in docker
    assert "--env-file promote-bot.env" in _compose_comment()
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "HEALTHCHECK" in dockerfile and "/healthz" in dockerfile


def test_compose_runs_the_bot_on_its_postgres_service() -> None:
    services = _compose()["services"]
    bot, postgres = services["bot"], services["postgres"]
    db = conninfo_to_dict(bot["environment"]["PROMOTE_BOT_DB"])
    assert (db["host"], db["port"]) == ("postgres", "5432")
    assert db["dbname"] == postgres["environment"]["POSTGRES_DB"]
    assert db["user"] == postgres["environment"]["POSTGRES_USER"]
    assert bot["depends_on"]["postgres"]["condition"] == "service_healthy"


@pytest.mark.parametrize("password", ["plain", "p@ss/w:rd#1?%", "with space"])
def test_any_database_password_reaches_libpq_intact_through_compose(
    password: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The password is never pasted into the URI (where `@` or `/` would break it): the bot
    gets it as PGPASSWORD, which libpq reads, and the URI still names host, user, database."""
    compose = _compose()
    env = {"POSTGRES_PASSWORD": password}
    bot = _interpolated(compose["services"]["bot"]["environment"], env)
    postgres = _interpolated(compose["services"]["postgres"]["environment"], env)
    db = conninfo_to_dict(bot["PROMOTE_BOT_DB"])
    assert (db["host"], db["user"], db["dbname"]) == ("postgres", "promote_bot", "promote_bot")
    assert "password" not in db and password not in bot["PROMOTE_BOT_DB"]
    assert bot["PGPASSWORD"] == postgres["POSTGRES_PASSWORD"] == password
    monkeypatch.setenv("PGPASSWORD", bot["PGPASSWORD"])
    defaults = {d.keyword: d.val for d in psycopg.pq.Conninfo.get_defaults()}
    assert defaults[b"password"] == password.encode()  # what libpq will send
    with pytest.raises(ValueError, match="POSTGRES_PASSWORD"):
        _interpolated(compose["services"]["bot"]["environment"], {})


def test_the_kubernetes_secret_command_creates_every_key_the_deployment_reads() -> None:
    container = _deployment_container()
    wanted = {
        e["valueFrom"]["secretKeyRef"]["key"]
        for e in container["env"]
        if "secretKeyRef" in e.get("valueFrom", {})
        and not e["valueFrom"]["secretKeyRef"].get("optional")
    }
    assert wanted <= set(_kubectl_secret()), sorted(wanted - set(_kubectl_secret()))


# --- starting the bot as each deployment file would -------------------------------------


@dataclass
class Container:
    """What the bot's process would see: its environment, its files, its command."""

    env: dict[str, str]
    files: dict[str, Path]  # a path in the container → the file on this machine behind it
    command: list[str]


def _dockerfile() -> tuple[dict[str, str], list[str], list[str]]:
    """The image's ENV, its CMD and its HEALTHCHECK command (exec forms)."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    env: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            env.update(word.split("=", 1) for word in shlex.split(line[4:]))  # type: ignore[misc]
    [cmd] = [json.loads(line[4:]) for line in text.splitlines() if line.startswith("CMD ")]
    [check] = re.findall(r"^HEALTHCHECK .*? CMD (\[.*\])$", text, re.M)
    return env, cmd, json.loads(check)


def _env_file(path: Path) -> dict[str, str]:
    lines = [line for line in path.read_text().splitlines() if line and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)  # type: ignore[misc]


def _interpolated(table: Mapping[str, object], env: Mapping[str, str]) -> dict[str, str]:
    """Compose's `${VAR}` and `${VAR:?message}` in a service's environment."""

    def one(match: re.Match[str]) -> str:
        name, message = match.group(1), match.group(3)
        if env.get(name):
            return env[name]
        if message is not None:
            raise ValueError(f"{name}: {message}")
        return ""

    return {k: re.sub(r"\$\{(\w+)(:\?(.*?))?\}", one, str(v)) for k, v in table.items()}


def _compose() -> dict:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


def _compose_comment() -> str:
    return "\n".join(
        line
        for line in (DEPLOY / "docker-compose.yml").read_text().splitlines()
        if line.startswith("#")
    )


def _deployment_container() -> dict:
    docs = list(yaml.safe_load_all((DEPLOY / "kubernetes.yml").read_text()))
    [deployment] = [d for d in docs if d["kind"] == "Deployment"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    return container


def _kubectl_secret() -> dict[str, str]:
    """The keys (and example values) the file's `kubectl create secret` command makes."""
    comment = (DEPLOY / "kubernetes.yml").read_text()
    command = comment.split("kubectl create secret generic promote-bot", 1)[1].split(
        "kubectl create configmap"
    )[0]
    words = shlex.split(command.replace("#", " ").replace("\\\n", " "))
    keys = {}
    for word in words:
        for kind in ("--from-literal=", "--from-file="):
            if word.startswith(kind):
                key, value = word.removeprefix(kind).split("=", 1)
                keys[key] = value
    return keys


def _host_files(tmp_path: Path) -> dict[str, Path]:
    """The files a person puts beside the checkout: the example config copied, the key."""
    config = tmp_path / "promote-bot.toml"
    config.write_text((ROOT / "promote-bot.example.toml").read_text())
    key = tmp_path / "AuthKey.p8"
    key.write_text(ASC_PEM)
    return {"promote-bot.toml": config, "AuthKey.p8": key, "AuthKey_2X9R4HXF34.p8": key}


def compose_container(tmp_path: Path) -> Container:
    image, cmd, _ = _dockerfile()
    bot = _compose()["services"]["bot"]
    env_file = _env_file(DEPLOY / "promote-bot.env.example")  # copied to promote-bot.env
    env = {**image, **env_file, **_interpolated(bot["environment"], env_file)}
    host = _host_files(tmp_path)
    files = {}
    for volume in bot["volumes"]:
        source, target = volume.split(":")[:2]
        files[target] = host[Path(source).name]
    return Container(env, files, bot.get("command") or cmd)


def kubernetes_container(tmp_path: Path) -> Container:
    image, cmd, _ = _dockerfile()
    container = _deployment_container()
    secret = {k: v.replace("…", "test") for k, v in _kubectl_secret().items()}
    env = dict(image)
    for entry in container["env"]:
        if "value" in entry:
            env[entry["name"]] = str(entry["value"])
        elif (ref := entry["valueFrom"]["secretKeyRef"])["key"] in secret:
            env[entry["name"]] = secret[ref["key"]]
    docs = list(yaml.safe_load_all((DEPLOY / "kubernetes.yml").read_text()))
    [deployment] = [d for d in docs if d["kind"] == "Deployment"]
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    host = _host_files(tmp_path)
    files = {}
    for mount in container["volumeMounts"]:
        volume = volumes[mount["name"]]
        if (
            "configMap" in volume
        ):  # kubectl create configmap promote-bot --from-file=promote-bot.toml
            files[f"{mount['mountPath']}/promote-bot.toml"] = host["promote-bot.toml"]
        else:
            for item in volume["secret"]["items"]:
                source = Path(secret[item["key"]].removeprefix("./")).name
                files[f"{mount['mountPath']}/{item['path']}"] = host[source]
    return Container(env, files, container.get("command") or cmd)


def docker_run_container(tmp_path: Path) -> Container:
    """README's `docker run --env-file promote-bot.env …`, with its mounts."""
    image, cmd, _ = _dockerfile()
    docker = _docker_section()
    env = {**image, **_env_file(DEPLOY / "promote-bot.env.example")}
    host = _host_files(tmp_path)
    files = {
        target: host[source]
        for source, target in re.findall(r'-v "\$PWD/([^:"]+):([^:"]+)(?::ro)?"', docker)
    }
    return Container(env, files, cmd)


CONTAINERS = {
    "docker-compose.yml": compose_container,
    "kubernetes.yml": kubernetes_container,
    "docker run --env-file": docker_run_container,
}


def _on_this_machine(container: Container, tmp_path: Path, slack_url: str) -> dict[str, str]:
    """The container's environment for a process here: its files' paths mapped to theirs, the
    database a SQLite file (the PostgreSQL URI is tested above), Slack the fake, the providers
    never called (start-up calls none), and the port the OS's choice."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(PREFIXES)}
    for name, value in container.env.items():
        env[name] = str(container.files.get(value, value))
    env.update(
        PYTHONPATH=str(ROOT),
        PROMOTE_BOT_DB=str(tmp_path / "promote-bot.db"),
        SLACK_API_URL=slack_url,
        ZNYX_API_URL="http://127.0.0.1:9",
        WHOP_API_URL="http://127.0.0.1:9",
        ASC_API_URL="http://127.0.0.1:9",
        PORT="0",
    )
    assert container.env["PROMOTE_BOT_CONFIG"] in container.files, "the config is not mounted"
    return env


def _argv(command: list[str]) -> list[str]:
    """`promote-bot …` as this checkout runs it (the console script is bot.cli:main)."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts[command[0]] == "bot.cli:main"
    return [sys.executable, "-m", "bot", *command[1:]]


async def _start(command: list[str], env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *_argv(command),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )


@pytest.mark.parametrize("name", CONTAINERS)
async def test_each_deployment_starts_the_bot_with_the_example_config(
    tmp_path: Path, name: str
) -> None:
    container = CONTAINERS[name](tmp_path)
    assert container.command == ["promote-bot", "serve"]
    slack = FakeSlack(
        token=container.env["SLACK_BOT_TOKEN"], app_token=container.env["SLACK_APP_TOKEN"]
    )
    async with WebServer(slack.app()) as fake:
        env = _on_this_machine(container, tmp_path, f"{fake.url}/api/")
        checking = await _start(["promote-bot", "check-config"], env)
        checked = (await asyncio.wait_for(checking.communicate(), 60))[0].decode()
        assert checking.returncode == 0, checked
        assert "znyx:guardrails:prod" in checked
        process = await _start(container.command, env)
        output = Output(process)
        try:
            line = await output.line("health and metrics listening on", within=30)
            port = int(re.findall(r":(\d+)/healthz", line)[0])
            async with httpx.AsyncClient() as http, asyncio.timeout(15):
                while (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code != 200:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            _, _, healthcheck = _dockerfile()
            probe = await asyncio.create_subprocess_exec(
                *[sys.executable if w == "python" else w for w in healthcheck],
                env={**env, "PORT": str(port)},
            )
            assert await asyncio.wait_for(probe.wait(), 15) == 0
            process.send_signal(signal.SIGTERM)
            assert await output.ended() == 0, output.lines
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    assert [c.method for c in slack.calls][:2] == ["auth.test", "apps.connections.open"]


def test_the_readme_names_every_bot_scope_the_manifest_asks_for() -> None:
    scopes = yaml.safe_load((ROOT / "manifest.yml").read_text())["oauth_config"]["scopes"]["bot"]
    readme = (ROOT / "README.md").read_text()
    step = readme.split("## Creating the Slack app", 1)[1].split("\n2. ", 1)[0]
    said = step.split("the bot scopes", 1)[1].split("nothing else", 1)[0]
    assert set(re.findall(r"`([a-z_]+(?::[a-z_]+)?)`", said)) == set(scopes), said
