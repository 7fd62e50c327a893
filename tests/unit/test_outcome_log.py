"""Outcomes in the log: failures at warning with id, reason and origin, never a flood."""

from __future__ import annotations

import logging

import pytest

from pushtrio.contract.outcome import Outcome, OutcomeKind
from pushtrio.sinks.outcome_log import OutcomeLogger


def outcome(kind: OutcomeKind, i: int) -> Outcome:
    return Outcome(
        kind, f"id-{i}", user_id="u", error="bad" if i % 2 else "", partition=2, offset=i
    )


def test_failed_and_invalid_are_logged_with_id_reason_and_origin(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="pushtrio.outcomes")
    logger = OutcomeLogger()
    logger.record(
        [
            outcome(OutcomeKind.DELIVERED, 0),
            outcome(OutcomeKind.FAILED, 1),
            outcome(OutcomeKind.INVALID, 3),
        ]
    )
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "failed id=id-1 user=u provider=- attempts=0 origin=partition 2 offset 1 reason=bad",
        "invalid id=id-3 user=u provider=- attempts=0 origin=partition 2 offset 3 reason=bad",
    ]
    assert all(r.levelno == logging.WARNING for r in caplog.records)


def test_a_flood_is_cut_to_the_burst_and_summarised(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pushtrio.outcomes")
    now = [0.0]
    logger = OutcomeLogger(burst=5, window_s=10.0, clock=lambda: now[0])
    logger.record([outcome(OutcomeKind.INVALID, i) for i in range(1000)])
    assert len(caplog.records) == 5
    now[0] = 10.0
    logger.record([outcome(OutcomeKind.FAILED, 1)])
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 7
    assert lines[5].startswith("995 invalid outcomes not logged in the last 10s")
    assert lines[6].startswith("failed id=id-1")


def test_debug_logs_every_outcome(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="pushtrio.outcomes")
    OutcomeLogger().record([outcome(OutcomeKind.DELIVERED, 0), outcome(OutcomeKind.DUPLICATE, 2)])
    assert [r.levelno for r in caplog.records] == [logging.DEBUG, logging.DEBUG]
    assert caplog.records[1].getMessage().startswith("duplicate id=id-2")
