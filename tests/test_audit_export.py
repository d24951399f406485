"""`promote-bot audit` as a process, on SQLite and PostgreSQL: the audit log out as JSON lines
or CSV, filtered by time and target, read back exactly (it round-trips), secrets never in it,
and the database only read."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot import export
from bot.cli import main
from bot.core.model import AuditEntry
from bot.store import AnyStore, SqliteStore

Factory = Callable[[], AnyStore]
ROOT = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 11, 1, 9, 30, tzinfo=UTC)
TOKEN = "xoxb-export-very-secret-token"  # the bot's own token, set in its environment
FORMULA = '=HYPERLINK("https://evil.example","click")'
DETAILS = [
    "staging v3 · sha256:5555 → prod",
    "Znyx said: Bearer abc.def.ghi was refused",  # credential-shaped: cut out
    f"echoed {TOKEN} back",  # a configured secret: cut out
    FORMULA,  # a spreadsheet would run it
    "'quoted' and \"double\", a comma, and\na second line",
    "",
]


def _seed(store: AnyStore) -> list[AuditEntry]:
    targets = ["znyx:guardrails:prod", "whop:storefront", None, "znyx:guardrails:staging"]
    for i in range(12):
        store.audit(
            AuditEntry(
                at=T0 + timedelta(days=i, minutes=i),
                request_id=i if i % 4 else None,
                actor="U0ALICE" if i % 2 else "promote-bot",
                event=["requested", "approved", "🚨 emergency", "rolled back"][i % 4],
                target=targets[i % 4],
                detail=DETAILS[i % len(DETAILS)],
            )
        )
    return list(store.audit_entries())


def _audit(db: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "PROMOTE_BOT"))}
    env.update(PROMOTE_BOT_DB=db, SLACK_BOT_TOKEN=TOKEN, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "bot", "audit", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=str(ROOT),
    )


def _expected(entries: list[AuditEntry]) -> list[AuditEntry]:
    """What the export must hold: the entries, secrets cut out."""
    return [e.model_copy(update=export.row(e, [TOKEN]) | {"at": e.at}) for e in entries]


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_the_export_round_trips_without_secrets(
    store_factory: Factory, shared_db: str, fmt: str
) -> None:
    entries = _seed(store_factory())
    assert [e.id for e in entries] == sorted(e.id for e in entries)  # oldest first
    result = _audit(shared_db, "--format", fmt)
    assert result.returncode == 0, result.stderr
    back = list(export.read(result.stdout.splitlines(keepends=True), fmt))
    assert back == _expected(entries)
    assert TOKEN not in result.stdout and "abc.def.ghi" not in result.stdout
    assert "[redacted]" in result.stdout
    if fmt == "csv":
        assert result.stdout.splitlines()[0] == "id,at,request_id,actor,event,target,detail"
        assert "'=HYPERLINK" in result.stdout  # shown as text, not run
    assert any(e.detail == FORMULA for e in back)  # and read back as it was


@pytest.fixture(autouse=True)
def _logging_as_it_was() -> Iterator[None]:
    """`main` gives the root logger its handler (on the captured stderr): taken away after."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
    root.setLevel(level)


def _main(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, db: str, *args: str
) -> tuple[int, str, str]:
    """`promote-bot audit` in this process (as its own: see `_audit`)."""
    monkeypatch.setenv("PROMOTE_BOT_DB", db)
    monkeypatch.setenv("SLACK_BOT_TOKEN", TOKEN)
    code = main(["audit", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_filters_by_time_and_target(
    store_factory: Factory,
    shared_db: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    entries = _seed(store_factory())

    def days(*args: str) -> list[int]:
        code, out, _ = _main(capsys, monkeypatch, shared_db, *args)
        assert code == 0
        return [e.at.day for e in export.read(out.splitlines(), "jsonl")]

    # A date alone: --since from its start, --until to its end.
    assert days("--since", "2026-11-03", "--until", "2026-11-05") == [3, 4, 5]
    # Times: --since includes its moment, --until does not.
    assert days("--since", "2026-11-03T09:32Z", "--until", "2026-11-04T09:33:00Z") == [3]
    _, out, _ = _main(capsys, monkeypatch, shared_db, "--target", "znyx:*")
    got = list(export.read(out.splitlines(), "jsonl"))
    assert got == _expected([e for e in entries if (e.target or "").startswith("znyx:")])
    _, out, _ = _main(
        capsys, monkeypatch, shared_db, "--target", "whop:store?ront", "--format", "csv"
    )
    got = list(export.read(out.splitlines(keepends=True), "csv"))
    assert [e.target for e in got] == ["whop:storefront"] * 3


def test_bad_arguments_and_databases_are_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "bot.db"
    SqliteStore(db).close()
    (tmp_path / "junk.db").write_text("not a database at all, just words")
    for where, args, words in (
        (db, ["--since", "last tuesday"], "is not a date like 2026-11-01"),
        (db, ["--since", "2026-11-05", "--until", "2026-11-01"], "--until must be after --since"),
        (db, ["--target", "znyx guardrails"], "is not a target or pattern"),
        (tmp_path / "nope.db", [], "nope.db does not exist"),
        (tmp_path / "junk.db", [], "is not a promote-bot database"),
    ):
        code, out, err = _main(capsys, monkeypatch, str(where), *args)
        assert code == 2 and out == "", args
        [line] = err.splitlines()
        assert line.startswith("promote-bot: ") and words in line, line
    assert not (tmp_path / "nope.db").exists()  # never created


def test_the_database_is_only_read(tmp_path: Path) -> None:
    db = tmp_path / "bot.db"
    store = SqliteStore(db)
    _seed(store)
    store.close()
    before = db.read_bytes()
    result = _audit(str(db), "--format", "csv")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) > 12
    assert db.read_bytes() == before  # not even the moment it was opened is written


def test_dates_people_write() -> None:
    assert export.when("2026-11-01") == datetime(2026, 11, 1, tzinfo=UTC)
    assert export.when("2026-11-30", end=True) == datetime(2026, 12, 1, tzinfo=UTC)
    assert export.when("2026-11-01T10:00") == datetime(2026, 11, 1, 10, tzinfo=UTC)
    assert export.when("2026-11-01T10:00:00+02:00") == datetime(2026, 11, 1, 8, tzinfo=UTC)
    assert export.when("2026-11-01T10:00Z", end=True) == datetime(2026, 11, 1, 10, tzinfo=UTC)
    with pytest.raises(ValueError, match="not a date"):
        export.when("yesterday")
