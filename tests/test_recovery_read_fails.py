"""A step marked sent whose answer was lost (the process was killed while App Store Connect
worked on it) is decided at recovery by reading. When that read is refused (401, 429 past the
retries), the step may well have landed: the request is `unknown`, never `failed` ("nothing was
changed"). Real `promote-bot serve`, killed with SIGKILL."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bot.core.model import State
from bot.store import open_any
from tests.recovering import killed_while_held, restarted, train_env
from tests.test_interruptions_release_train import Train, train  # noqa: F401

RELEASE = "POST /v1/appStoreVersionReleaseRequests"


@pytest.mark.parametrize("status", [401, 429])
async def test_a_release_that_landed_is_unknown_when_the_recovery_read_is_refused(
    tmp_path: Path,
    train: Train,  # noqa: F811
    status: int,
) -> None:
    env = train_env(tmp_path, train)
    # Apple completes the release the dead process sent.
    killed = await killed_while_held(train, env, "appstore release ios 2.3.1", RELEASE, lands=True)
    await asyncio.sleep(0.3)
    assert train.asc.train.release_requests  # it landed
    # The recovery's read of the step is refused: 401 again with a fresh token, or 429 past
    # the three retries.
    for _ in range({401: 2, 429: 3}[status]):
        train.asc.fail_next(status, "Refused", "try later", method="GET")
    await restarted(train, env, killed)
    store = open_any(str(tmp_path / "shared.db"))
    request = store.get(1)
    assert request is not None and request.outcome is not None
    assert request.state is State.UNKNOWN, request.outcome
    assert "nothing was changed" not in request.outcome.headline
    assert "reading whether it took effect failed" in request.outcome.headline
    assert train.writes().count(RELEASE) == 1  # never sent again
    store.close()
