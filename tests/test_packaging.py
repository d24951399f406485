"""The quick start stays true: CI runs the README's test line; the image runs as non-root; the
sandbox is as the README tells it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from bot.sandbox.appstore import FakeAppStore
from bot.sandbox.whop import FakeWhop
from bot.sandbox.world import seed_appstore, seed_whop

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


def test_the_readme_tells_the_sandbox_as_it_is_seeded() -> None:
    """The App Store builds and the Whop builds the README names are the sandbox's."""
    asc, whop = FakeAppStore(), FakeWhop()
    seed_appstore(asc, ec.generate_private_key(ec.SECP256R1()))
    seed_whop(whop)
    readme = (ROOT / "README.md").read_text()
    sandbox = readme.split("- `--sandbox` starts the fakes", 1)[1].split("\n- ", 1)[0]
    told = sandbox.split("an App Store app `ios`", 1)[1].split("; people", 1)[0]
    numbers = {int(n) for n in re.findall(r"\b(1\d\d)\b", told.split("there", 1)[0])}
    assert numbers == {int(b.number) for b in asc.builds.values()}, told
    for build_id, status in re.findall(r"`(apbu_\w+)` (\w+)", sandbox):
        assert whop.builds[build_id].status == status, build_id
