"""The one backoff policy: exponential ceilings, capped, and the two jitters."""

from __future__ import annotations

import random

import pytest

from controller.backoff import Jitter, RetryPolicy
from controller.loop import PASS_BACKOFF, WATCH_BACKOFF


def test_ceilings_double_up_to_the_cap() -> None:
    policy = RetryPolicy(base_s=0.5, max_s=30.0)
    assert [policy.ceiling(n) for n in range(8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert policy.ceiling(10_000) == 30.0  # no overflow however long it failed


@pytest.mark.parametrize(("jitter", "floor"), [("full", 0.0), ("equal", 0.5)])
def test_delays_are_drawn_between_the_jitters_floor_and_the_ceiling(jitter: Jitter, floor: float) -> None:
    policy = RetryPolicy(base_s=1.0, max_s=8.0, jitter=jitter)
    random.seed(7)
    for attempt in range(6):
        delays = [policy.delay(attempt) for _ in range(200)]
        ceiling = policy.ceiling(attempt)
        assert all(floor * ceiling <= d <= ceiling for d in delays)
        assert min(delays) < (floor + 0.2) * ceiling  # the whole range is used, not one end
        assert max(delays) > 0.8 * ceiling


def test_the_controllers_loops_use_equal_jitter() -> None:
    # A failed pass or a broken watch waits at least half its planned time.
    assert PASS_BACKOFF.jitter == WATCH_BACKOFF.jitter == "equal"
    assert WATCH_BACKOFF.ceiling(10) == 30.0


def test_a_policy_that_cannot_work_is_refused() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(attempts=0)
    with pytest.raises(ValueError):
        RetryPolicy(base_s=-1.0)
