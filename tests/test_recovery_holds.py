"""A recovery that carries a multi-step request on (sends the steps never sent) asks the
holds first, as `execute` does before its first write: a lock set while the bot was down (an
incident) stops it there, `failed`, naming the lock and what was done before it, audited. Real
`promote-bot serve`, killed with SIGKILL."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from bot.core.model import Lock, State
from bot.store import open_any
from tests.conftest import DAVE
from tests.recovering import killed_while_held, restarted, train_env
from tests.test_interruptions_release_train import CREATE, Train, train  # noqa: F401


async def test_a_restart_sends_nothing_past_a_lock_set_while_it_was_down(
    tmp_path: Path,
    train: Train,  # noqa: F811
) -> None:
    env = train_env(tmp_path, train)
    # The create lands; its answer was lost with the process.
    killed = await killed_while_held(train, env, "appstore submit ios 2.4.0", CREATE, lands=True)
    store = open_any(str(tmp_path / "shared.db"))
    freeze = Lock(
        pattern="appstore:*", reason="incident: App Review freeze", by=DAVE, at=datetime.now(UTC)
    )
    store.add_lock(freeze)
    await restarted(train, env, killed)
    request = store.get(1)
    assert request is not None and request.outcome is not None
    assert train.writes() == [CREATE]  # neither the item nor the submit went out
    assert request.state is State.FAILED, request.outcome
    headline = request.outcome.headline
    assert "incident: App Review freeze" in headline
    [submission] = train.asc.train.submissions.values()
    assert f"review submission {submission.id} was created" in headline  # done before it
    events = [e.event for e in store.history(request_id=1, limit=100)]
    assert "held" in events and "recovered: failed" in events
    store.close()
