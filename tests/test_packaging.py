"""The quick start stays true: CI runs the README's test line; the image runs as non-root."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _commands(path: Path) -> list[str]:
    lines = path.read_text().splitlines()
    return [ln for ln in lines if ln.strip() and not re.match(r"\s*(#|set |cd )", ln)]


def test_ci_runs_exactly_the_readme_test_line() -> None:
    [ci_line] = _commands(ROOT / ".ci" / "run")
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)\n```", readme, flags=re.S)
    assert len(blocks) >= 2
    assert blocks[1] == ci_line  # the quick start's second line
    assert "promote-bot" in blocks[0] and "pip install" in blocks[0]


def test_dockerfile_runs_serve_as_a_non_root_user() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    users = re.findall(r"^USER\s+(\S+)", dockerfile, flags=re.M)
    assert users and users[-1] not in ("root", "0")
    assert re.search(r'^CMD \["promote-bot", "serve"\]', dockerfile, flags=re.M)
    assert re.search(r"^FROM python:3\.\d+-slim", dockerfile, flags=re.M)


def test_the_benchmark_harness_at_least_starts() -> None:
    """It is run on demand, not here; this only keeps it from rotting unnoticed."""
    result = subprocess.run(
        [sys.executable, "-m", "bench.run", "--help"], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 0 and "--profile" in result.stdout


def test_the_readme_lists_exactly_the_scopes_the_manifest_asks_for() -> None:
    import yaml

    manifest = yaml.safe_load((ROOT / "manifest.yml").read_text())
    readme = (ROOT / "README.md").read_text()
    creating = readme.split("## Creating the Slack app", 1)[1]
    step_one = creating.split("\n2. ", 1)[0]
    listed = re.findall(r"^\s+- `([a-z]+(?::[a-z]+)?)`:", step_one, flags=re.M)
    assert listed, "README: step 1 of 'Creating the Slack app' lists no scopes"
    assert len(listed) == len(set(listed))
    assert sorted(listed) == sorted(manifest["oauth_config"]["scopes"]["bot"])
