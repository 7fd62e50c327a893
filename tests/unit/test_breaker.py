"""The per-provider circuit breaker: closed, open, half open, on a fake clock."""

from __future__ import annotations

import pytest

from pushtrio.pipeline.breaker import BreakerOptions, BreakerState, CircuitBreaker

OPTIONS = BreakerOptions(failure_rate=0.5, min_calls=4, window=10, open_for_s=30.0, probe_calls=2)


def state(b: CircuitBreaker) -> BreakerState:
    """Read afresh each time (the property moves on with the clock)."""
    return b.state


def opened(now: list[float], changes: list[tuple[str, BreakerState]]) -> CircuitBreaker:
    """A breaker that MIN_CALLS failures have just opened."""
    b = breaker(now, changes)
    for _ in range(OPTIONS.min_calls):
        b.record(False)
    return b


def breaker(now: list[float], changes: list[tuple[str, BreakerState]]) -> CircuitBreaker:
    return CircuitBreaker(
        "fcm", OPTIONS, clock=lambda: now[0], on_change=lambda n, s: changes.append((n, s))
    )


def test_it_stays_closed_below_the_minimum_number_of_calls() -> None:
    changes: list[tuple[str, BreakerState]] = []
    b = breaker([0.0], changes)
    for _ in range(3):
        assert b.allow()
        b.record(False)
    assert state(b) is BreakerState.CLOSED
    assert b.failure_rate() == 1.0
    assert changes == []


def test_it_opens_at_the_failure_rate_and_refuses_calls_while_open() -> None:
    now: list[float] = [0.0]
    changes: list[tuple[str, BreakerState]] = []
    b = breaker(now, changes)
    for ok in (True, True, False, False):  # 2 of 4 failed: 50%
        b.record(ok)
    assert state(b) is BreakerState.OPEN
    assert not b.allow()
    now[0] = 29.9
    assert not b.allow()
    assert changes == [("fcm", BreakerState.OPEN)]


def test_half_open_lets_probes_through_and_closes_when_they_succeed() -> None:
    now: list[float] = [0.0]
    changes: list[tuple[str, BreakerState]] = []
    b = opened(now, changes)
    now[0] = 30.0
    assert state(b) is BreakerState.HALF_OPEN
    assert b.allow()
    assert b.allow()
    assert not b.allow()  # only probe_calls of them
    b.record(True)
    assert state(b) is BreakerState.HALF_OPEN
    b.record(True)
    assert state(b) is BreakerState.CLOSED
    assert b.failure_rate() == 0.0  # the window starts afresh
    assert [s for _, s in changes] == [
        BreakerState.OPEN,
        BreakerState.HALF_OPEN,
        BreakerState.CLOSED,
    ]


def test_a_failed_probe_opens_it_again_for_another_period() -> None:
    now: list[float] = [0.0]
    changes: list[tuple[str, BreakerState]] = []
    b = opened(now, changes)
    now[0] = 30.0
    assert b.allow()
    b.record(False)
    assert state(b) is BreakerState.OPEN
    now[0] = 59.0
    assert not b.allow()
    now[0] = 60.0
    assert state(b) is BreakerState.HALF_OPEN
    assert b.transitions == 4


def test_the_window_slides_so_old_failures_are_forgotten() -> None:
    b = breaker([0.0], [])
    for _ in range(4):
        b.record(True)
    for _ in range(4):
        b.record(False)
    assert state(b) is BreakerState.OPEN  # 4 of 8 failed
    healthy = breaker([0.0], [])
    for ok in [False] + [True] * 10:  # the failure slides out of a window of 10
        healthy.record(ok)
    assert healthy.failure_rate() == 0.0
    assert state(healthy) is BreakerState.CLOSED


def test_late_answers_while_open_change_nothing() -> None:
    now = [0.0]
    b = opened(now, [])
    b.record(True)
    b.record(True)
    assert state(b) is BreakerState.OPEN


@pytest.mark.parametrize(
    "changes",
    [
        {"failure_rate": 0.0},
        {"failure_rate": 1.5},
        {"min_calls": 0},
        {"min_calls": 11},
        {"open_for_s": -1.0},
        {"probe_calls": 0},
    ],
)
def test_bad_options_are_refused(changes: dict[str, float]) -> None:
    base = {"failure_rate": 0.5, "min_calls": 4, "window": 10, "open_for_s": 1.0, "probe_calls": 1}
    with pytest.raises(ValueError, match="must be"):
        BreakerOptions(**{**base, **changes})  # type: ignore[arg-type]


def test_retry_in_counts_down_the_open_time_and_is_zero_otherwise() -> None:
    now = [0.0]
    b = breaker(now, [])
    assert b.retry_in_s() == 0.0
    for _ in range(OPTIONS.min_calls):
        b.record(False)
    now[0] = 10.0
    assert b.retry_in_s() == pytest.approx(20.0)
    now[0] = 30.0
    assert b.retry_in_s() == 0.0  # half open now
    assert state(b) is BreakerState.HALF_OPEN


def probes_out(now: list[float]) -> CircuitBreaker:
    """A breaker half open at 30 s whose probe slots are all taken."""
    b = opened(now, [])
    now[0] = 30.0
    assert b.allow()
    assert b.allow()
    assert not b.allow()
    return b


def test_probes_whose_results_never_come_are_given_again_after_open_for() -> None:
    now = [0.0]
    b = probes_out(now)
    now[0] = 59.9
    assert not b.allow()
    now[0] = 60.0
    assert b.allow()  # new probes: the breaker cannot stay half open for ever
    b.record(True)
    assert b.allow()
    b.record(True)
    assert state(b) is BreakerState.CLOSED


def test_a_probe_that_did_not_go_out_is_given_back() -> None:
    b = probes_out([0.0])
    b.give_back()  # the rate limit refused that one: its slot is free again
    assert b.allow()
    b.give_back()
    b.give_back()
    b.give_back()  # never more slots than probe calls
    assert b.allow()
    assert b.allow()
    assert not b.allow()


def test_a_permanent_error_counts_as_an_answer_only_while_half_open() -> None:
    now = [0.0]
    changes: list[tuple[str, BreakerState]] = []
    b = breaker(now, changes)
    b.answered()
    assert b.failure_rate() == 0.0  # closed: not recorded at all
    for _ in range(OPTIONS.min_calls):
        b.record(False)
    now[0] = 30.0
    assert b.allow()
    b.answered()
    assert b.allow()
    b.answered()  # both probes answered: the provider is up
    assert state(b) is BreakerState.CLOSED
