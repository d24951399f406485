"""What a window's rows add up to, kept as rows come and go (bot/store/tally.py): after any
sequence of rows added, replaced and removed, and of copies changed on their own, a tally's
figures are those of its rows counted whole, and what one of a copy and its original changes
never reaches the other."""

from __future__ import annotations

import random
from typing import Any

import pytest

from bot.store.tally import Tally, figures_of

STATES = ("succeeded", "failed", "unknown", "rejected", "cancelled", "expired")


def a_row(rng: random.Random, request_id: int) -> dict[str, Any]:
    rollback = rng.random() < 0.2
    state = rng.choice(STATES)
    done = state == "succeeded"

    def duration() -> float | None:  # few values, so that equal durations are common
        return float(rng.choice((1, 2, 2, 3, 60, 61.5, 3600))) if rng.random() < 0.8 else None

    return {
        "id": request_id,
        "target": rng.choice(("whop:app/prod", "znyx:b1/prod", "znyx:b1/staging", "asc:9")),
        "state": state,
        "rollback": int(rollback),
        "emergency": int(rng.random() < 0.1),
        "undone": int(done and not rollback and rng.random() < 0.2),
        "lead": duration() if done and not rollback else None,
        "wait": None if rollback else duration(),
        "restore": duration() if done and rollback else None,
    }


@pytest.mark.parametrize("seed", range(40))
def test_a_tally_kept_up_to_date_adds_up_as_its_rows_counted_whole(seed: int) -> None:
    rng = random.Random(seed)
    rows = {i: a_row(rng, i) for i in range(rng.randint(0, 30))}
    tally = Tally.of(rows.values())
    kept: list[tuple[Tally, list[dict[str, Any]]]] = []  # copies' originals, and their rows
    for _ in range(200):
        step = rng.random()
        if step < 0.4:  # a request that ended, or ended again (a late success)
            i = rng.randint(0, 40)
            if i in rows:
                tally.remove(rows[i])
            rows[i] = a_row(rng, i)
            tally.add(rows[i])
        elif step < 0.7 and rows:  # the window moved on past it
            tally.remove(rows.pop(rng.choice(list(rows))))
        elif step < 0.8:  # a copy changed on its own: the other stays as it was
            copy = tally.copy()
            if rng.random() < 0.5:  # the copy goes on (as a window brought up to date)
                kept.append((tally, list(rows.values())))
                tally = copy
            else:  # or the original does
                kept.append((copy, list(rows.values())))
        assert tally.figures() == figures_of(rows.values())
    for original, had in kept:
        assert original.figures() == figures_of(had)
        for target in {row["target"] for row in had}:  # its parts read again, not its figures
            probe = {**a_row(rng, 999), "target": target}
            original.add(probe)
            original.remove(probe)
        assert original.figures() == figures_of(had)


def test_the_figures_of_rows() -> None:
    rows = [
        {"id": 1, "target": "t", "state": "succeeded", "rollback": 0, "emergency": 1,
         "undone": 1, "lead": 30.0, "wait": 10.0, "restore": None},
        {"id": 2, "target": "t", "state": "succeeded", "rollback": 0, "emergency": 0,
         "undone": 0, "lead": 10.0, "wait": None, "restore": None},
        {"id": 3, "target": "t", "state": "succeeded", "rollback": 1, "emergency": 0,
         "undone": 0, "lead": None, "wait": None, "restore": 5.0},
        {"id": 4, "target": "t", "state": "expired", "rollback": 0, "emergency": 0,
         "undone": 0, "lead": None, "wait": None, "restore": None},
        {"id": 5, "target": "a", "state": "failed", "rollback": 1, "emergency": 0,
         "undone": 0, "lead": None, "wait": None, "restore": None},
    ]  # fmt: skip
    a, t = figures_of(rows)
    assert (a.target, a.rollbacks, a.failed, a.lead_p50) == ("a", 0, 0, None)  # counted nowhere
    assert (t.succeeded, t.stopped, t.rollbacks, t.rolled_back, t.emergencies) == (2, 1, 1, 1, 1)
    assert (t.lead_p50, t.lead_p90, t.wait_p50, t.restore_p50) == (10.0, 30.0, 10.0, 5.0)


def test_a_row_never_added_is_not_taken_away_in_silence() -> None:
    row = a_row(random.Random(1), 1) | {"lead": 5.0, "state": "succeeded", "rollback": 0}
    tally = Tally.of([row])
    with pytest.raises(ValueError, match="never added"):
        tally.remove({**row, "lead": 6.0})
