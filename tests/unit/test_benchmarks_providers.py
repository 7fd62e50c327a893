"""The providers phase of the benchmarks: its records, its arithmetic, its report section."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from benchmarks import report
from benchmarks.providers import (
    apns_token,
    fcm_token,
    per_notification_us,
    provider_records,
)

from pushtrio.contract.notification import parse_notification


def test_records_alternate_providers_and_name_one_valid_token_each() -> None:
    records = provider_records(4, ("apns", "fcm"), "p")
    documents = [orjson.loads(value) for _, value in records]
    assert [d["provider"] for d in documents] == ["apns", "fcm", "apns", "fcm"]
    assert [d["tokens"] for d in documents] == [
        [apns_token(0)],
        [fcm_token(1)],
        [apns_token(2)],
        [fcm_token(3)],
    ]
    assert [d["id"] for d in documents] == ["p-0", "p-1", "p-2", "p-3"]
    assert [key for key, _ in records] == [d["user_id"].encode() for d in documents]
    for _, value in records:
        notification = parse_notification(value)
        assert len(notification.tokens) == 1


def test_apns_tokens_are_64_hex_digits() -> None:
    token = apns_token(255)
    assert len(token) == 64
    assert token.endswith("ff")
    int(token, 16)


def test_records_need_a_provider() -> None:
    with pytest.raises(ValueError, match="at least one provider"):
        provider_records(1, (), "p")


def test_per_notification_is_in_microseconds() -> None:
    assert per_notification_us(0.5, 5000) == pytest.approx(100.0)
    assert per_notification_us(1.0, 0) == 0.0


def _run(label: str, rate: float, cpu_us: float, outcomes: dict[str, int]) -> dict[str, Any]:
    return {
        "name": label.lower(),
        "label": label,
        "messages": 1000,
        "outcomes": outcomes,
        "startup_s": 1.2,
        "seconds": 1000 / rate,
        "rate": rate,
        "cpu_s": cpu_us * 1000 / 1e6,
        "cpu_notifications": 1000,
        "cpu_us_per_notification": cpu_us,
        "cpu": {"service_percent": 90, "harness_percent": 60, "machine_percent": 180, "cores": 2},
        "memory": {"peak_mib": 100.0, "steady_mib": 95.0, "samples": 3},
    }


def _doc() -> dict[str, Any]:
    return {
        "schema": report.SCHEMA,
        "providers": {
            "messages": 1000,
            "fake_latency_ms": 5.0,
            "runs": [
                _run("mocks", 7000, 100, {"delivered": 1000}),
                _run("APNs fake", 2000, 250, {"delivered": 999, "failed": 1}),
                _run("FCM fake", 1500, 300, {"delivered": 1000}),
            ],
            "apns": {
                "requests": 1000,
                "accepted": 999,
                "connections": 1,
                "max_concurrent_streams": 87,
                "stream_limit": 100,
            },
            "fcm": {"requests": 1000, "accepted": 1000, "token_exchanges": 1},
            "settings": {"PROVIDER_LATENCY": "5ms"},
        },
    }


def test_the_section_puts_the_three_runs_side_by_side() -> None:
    [(title, rows)] = report.sections(_doc())
    assert title.startswith("8. Real providers: 1,000 notifications")
    figures = {measure: figure for measure, figure, _ in rows}
    labels = "mocks / APNs fake / FCM fake"
    assert figures[f"throughput, first to last outcome: {labels}"] == "7,000 / 2,000 / 1,500 msg/s"
    assert figures[f"service CPU per notification: {labels}"] == "100 / 250 / 300 µs"
    assert figures[f"outcome failed: {labels}"] == "0 / 1 / 0"
    assert figures["APNs fake: HTTP/2 connections / most streams open at once (limit)"] == (
        "1 / 87 (100)"
    )


def test_the_markdown_has_the_method_and_the_settings() -> None:
    text = report.markdown_section(_doc())
    assert report.PROVIDERS_METHOD in text
    assert "- providers: `PROVIDER_LATENCY=5ms`" in text
