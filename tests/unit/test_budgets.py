"""The waits derived from PROVIDER_TIMEOUT nest: each inner one runs out first."""

from __future__ import annotations

import pytest

from pushtrio.budgets import DEFAULT_BUDGETS, TimeBudgets, send_deadline_s
from pushtrio.config import load_settings

# From the shortest PROVIDER_TIMEOUT the settings take to the longest (an hour).
TIMEOUTS = [0.001, 0.1, 1.0, 2.5, 10.0, 30.0, 600.0, 3600.0]


@pytest.mark.parametrize("timeout_s", TIMEOUTS)
def test_each_wait_runs_out_before_the_one_around_it(timeout_s: float) -> None:
    budgets = TimeBudgets.from_provider_timeout(timeout_s)
    assert (
        0
        < budgets.request_s
        < budgets.send_deadline_s
        < budgets.device_deadline_s
        < budgets.provider_call_s
        <= budgets.probe_wait_s
    )


@pytest.mark.parametrize("timeout_s", TIMEOUTS)
def test_a_token_exchange_and_the_send_after_it_fit_in_the_device_deadline(
    timeout_s: float,
) -> None:
    budgets = TimeBudgets.from_provider_timeout(timeout_s)
    assert 2 * budgets.request_s < budgets.device_deadline_s


@pytest.mark.parametrize("timeout_s", TIMEOUTS)
def test_the_provider_call_is_provider_timeout_itself(timeout_s: float) -> None:
    budgets = TimeBudgets.from_provider_timeout(timeout_s)
    assert budgets.provider_call_s == timeout_s
    assert budgets.send_deadline_s == send_deadline_s(budgets.request_s)


def test_the_defaults_follow_the_default_provider_timeout() -> None:
    default_s = load_settings({}).provider_timeout_s
    assert TimeBudgets.from_provider_timeout(default_s) == DEFAULT_BUDGETS
    assert (DEFAULT_BUDGETS.request_s, DEFAULT_BUDGETS.device_deadline_s) == (4.0, 9.0)
