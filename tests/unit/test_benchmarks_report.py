"""The benchmark report: targets, table sections, JSON and the markdown section."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from benchmarks import report
from benchmarks.delays import most_in_a_window
from rich.console import Console


def _throughput(rate_total: float, peak_mib: float) -> dict[str, Any]:
    return {
        "messages": 1000,
        "produce_s": 0.1,
        "total_s": 1000 / rate_total,
        "startup_s": 0.05,
        "processing_s": 1000 / rate_total - 0.05,
        "rate_total": rate_total,
        "rate_processing": rate_total * 1.1,
        "outcomes": {"delivered": 990, "invalid": 10},
        "memory": {"peak_mib": peak_mib, "steady_mib": peak_mib - 5, "samples": 10},
        "cpu": {
            "service_percent": 95.2,
            "harness_percent": 3.0,
            "machine_percent": 180.4,
            "cores": 2,
        },
        "settings": {"PROVIDER_LATENCY": "0"},
    }


def _doc() -> dict[str, Any]:
    pipeline = _throughput(7000.0, 90.0)
    pipeline["ratio_total"] = 0.7
    pipeline["ratio_processing"] = 0.75
    step = {
        "target_rate": 5000.0,
        "achieved_rate": 4990.0,
        "sent": 5000,
        "catch_up_s": 0.1,
        "outcomes": {"delivered": 5000},
        "latency": {
            "count": 5000,
            "p50_ms": 10.0,
            "p95_ms": 30.0,
            "p99_ms": 60.0,
            "max_ms": 80.0,
            "mean_ms": 12.0,
        },
    }
    return {
        "schema": report.SCHEMA,
        "command": "python -m benchmarks --quick",
        "duration_s": 95.0,
        "machine": {"cores_logical": 2, "kafka": "4.1.1", "measured_at": "2026-01-01T00:00:00Z"},
        "ceiling": {"messages": 1000, "rate_total": 10000.0, "rate_read": 11000.0, "total_s": 0.1},
        "pipeline": pipeline,
        "mix": {**_throughput(5000.0, 100.0), "users": 10, "rate_limit_per_user": 3},
        "latency": {
            "steps": [step],
            "memory": {"peak_mib": 130.0, "steady_mib": 70.0, "samples": 5},
            "settings": {},
        },
    }


def test_targets_judge_each_figure() -> None:
    judged = {item["name"]: item for item in report.targets(_doc())}
    assert judged["pipeline throughput / ceiling"]["met"] is True
    assert judged["p99 latency at 5,000 msg/s"]["met"] is False
    assert judged["p99 latency at 5,000 msg/s"]["value"] == 60.0
    # The peak is the highest of the pipeline (90) and latency (130) phases.
    assert judged["peak RSS (pipeline, latency)"]["value"] == 130.0
    assert judged["peak RSS (pipeline, latency)"]["met"] is False


def test_missing_phases_are_left_out() -> None:
    doc = {"schema": report.SCHEMA, "ceiling": _doc()["ceiling"]}
    assert report.targets(doc) == []
    assert [title for title, _ in report.sections(doc)] == [
        "1. Ceiling: bare kafka-python consumer + orjson, 1,000 records"
    ]


def test_sections_show_outcome_shares() -> None:
    rows = {
        measure: figure for _, section in report.sections(_doc()) for measure, figure, _ in section
    }
    assert rows["outcome invalid"] == "10 (1.0%)"
    assert rows["5,000 msg/s: p99"] == "60.0 ms"
    assert rows["CPU: service / harness / machine"] == "95% / 3% / 180% of 200%"


def test_print_table_renders(capsys: pytest.CaptureFixture[str]) -> None:
    report.print_table(Console(width=140, force_terminal=False), _doc())
    out = capsys.readouterr().out
    assert "NOT met" in out
    assert "7,000 msg/s" in out


def test_json_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "out" / "bench.json"
    report.write_json(path, _doc())
    assert report.read_json(path) == _doc()


def test_read_json_rejects_other_documents(tmp_path: Path) -> None:
    path = tmp_path / "other.json"
    path.write_text('{"schema": 99}')
    with pytest.raises(ValueError, match="not a benchmarks JSON"):
        report.read_json(path)


def test_markdown_section_has_markers_table_and_targets() -> None:
    section = report.markdown_section(_doc())
    assert section.startswith(report.BEGIN_MARK)
    assert section.rstrip().endswith(report.END_MARK)
    assert "python -m benchmarks --quick" in section
    assert "| 5,000 msg/s: p99 | 60.0 ms | < 50 ms (NOT met) |" in section
    assert "**NOT met**" in section


def test_replace_section_keeps_surrounding_text() -> None:
    text = f"# Title\n\nintro\n\n{report.BEGIN_MARK}\nold\n{report.END_MARK}\n\n## Notes\nmine\n"
    new = f"{report.BEGIN_MARK}\nnew\n{report.END_MARK}\n"
    result = report.replace_section(text, new)
    assert (
        result
        == f"# Title\n\nintro\n\n{report.BEGIN_MARK}\nnew\n{report.END_MARK}\n\n## Notes\nmine\n"
    )
    # Idempotent: replacing again changes nothing.
    assert report.replace_section(result, new) == result


def test_replace_section_appends_when_absent() -> None:
    new = f"{report.BEGIN_MARK}\nnew\n{report.END_MARK}\n"
    assert report.replace_section("# Title\n", new) == "# Title\n\n" + new
    assert report.replace_section("", new) == new


def test_update_markdown_creates_the_file(tmp_path: Path) -> None:
    path = tmp_path / "BENCHMARKS.md"
    report.update_markdown(path, _doc())
    report.update_markdown(path, _doc())
    assert path.read_text().count(report.BEGIN_MARK) == 1


def _others(rate: float) -> dict[str, Any]:
    return {"delivered": 600, "seconds": 600 / rate, "rate": rate, "p50_s": 0.3, "total_s": 2.0}


def test_outage_and_defer_sections_judge_their_targets() -> None:
    doc = _doc()
    doc["outage"] = {
        "messages": 900,
        "down": "fcm",
        "healthy": _others(1000.0),
        "outage": _others(790.0),
        "ratio": 0.79,
        "ratios": [0.79, 0.7, 0.85],
        "outcomes": {"delivered": 600},
        "parked": 900,
        "retry_scheduled": 12,
        "breaker": "open",
        "settings": {},
    }
    doc["defer"] = {
        "messages": 100,
        "users": 5,
        "limit": 5,
        "window_s": 1.0,
        "outcomes": {"delivered": 100},
        "deferred": 150,
        "seconds": 3.4,
        "minimum_s": 3.0,
        "most_in_a_window": 5,
        "settings": {},
    }
    titled = dict(report.sections(doc))
    [outage] = [rows for title, rows in titled.items() if title.startswith("6. One provider down")]
    assert (
        "others' throughput during the outage, ratio (median round)",
        "0.79",
        ">= 0.8 (NOT met)",
    ) in outage
    assert ("ratio of each round", "0.79 / 0.70 / 0.85", "") in outage
    [defer] = [rows for title, rows in titled.items() if title.startswith("7. Deferral")]
    assert ("most deliveries of one user in a window", "5", "<= 5 (met)") in defer


def test_most_in_a_window_counts_one_user_at_a_time() -> None:
    def delivered(user: str, ts: float, latency_ms: float = 0.0) -> dict[str, Any]:
        return {"event": "delivered", "user_id": user, "ts": ts, "latency_ms": latency_ms}

    outcomes = [delivered("a", t) for t in (0.0, 0.1, 1.2, 1.3)] + [delivered("b", 0.05)]
    assert most_in_a_window(outcomes, 1.0) == 2
    # Logged 0.9 s apart, but the first slot may have been taken up to 0.2 s earlier:
    # surely within one window only when even that is under it.
    assert most_in_a_window([delivered("a", 0.0, 200.0), delivered("a", 0.9)], 1.0) == 1
    assert most_in_a_window([delivered("a", 0.0, 50.0), delivered("a", 0.9)], 1.0) == 2


def test_the_median_latency_run_is_reported_with_every_p99() -> None:
    def run(p99_at_5000: float) -> dict[str, Any]:
        step = {"target_rate": 5000.0, "latency": {"p99_ms": p99_at_5000}}
        return {"steps": [{"target_rate": 1000.0, "latency": {"p99_ms": 20.0}}, step]}

    chosen = report.median_latency_run([run(90.0), run(40.0), run(55.0)])
    assert chosen["steps"][1]["latency"]["p99_ms"] == 55.0
    assert chosen["p99_runs_ms"] == {"1000": [20.0, 20.0, 20.0], "5000": [90.0, 40.0, 55.0]}


def _lanes_run(label: str, rate: float, p99_ms: float | None) -> dict[str, Any]:
    def summary(p99: float) -> dict[str, Any]:
        return {
            "count": 100,
            "p50_ms": p99 / 4,
            "p95_ms": p99 / 2,
            "p99_ms": p99,
            "max_ms": p99 + 10,
            "mean_ms": p99 / 3,
        }

    return {
        "label": label,
        "backlog": {"records": 50_000, "seconds": 50_000 / rate, "rate": rate},
        "urgent": None if p99_ms is None else summary(p99_ms),
        "post": None if p99_ms is None else summary(40.0),
        "urgent_sent": 0 if p99_ms is None else 100,
        "accepted_during_drain": 0 if p99_ms is None else 100,
        "startup_s": 1.5,
        "outcomes": {"delivered": 50_000 if p99_ms is None else 50_100},
        "settings": {"PROVIDER_LATENCY": "5ms"},
    }


def _lanes(on_p99_ms: float, ratio: float) -> dict[str, Any]:
    return {
        "backlog": 50_000,
        "urgent": 100,
        "send_interval_ms": 14.4,
        "no_urgent": _lanes_run("lanes-no-urgent", 20_000.0, None),
        "lanes_on": _lanes_run("lanes-on", 20_000.0 * ratio, on_p99_ms),
        "lanes_off": _lanes_run("lanes-off", 18_000.0, 2500.0),
        "throughput_ratio": ratio,
        "settings": {"PROVIDER_LATENCY": "5ms"},
    }


@pytest.mark.parametrize(
    ("on_p99_ms", "ratio", "latency_met", "ratio_met"),
    [(120.0, 0.95, True, True), (1200.0, 0.85, False, False)],
)
def test_lanes_section_and_targets(
    on_p99_ms: float, ratio: float, latency_met: bool, ratio_met: bool
) -> None:
    doc = {"schema": report.SCHEMA, "lanes": _lanes(on_p99_ms, ratio)}
    [(title, rows)] = report.sections(doc)
    assert title.startswith("9. Priority lanes: a backlog of 50,000 priority-0 records")
    assert "(one every 14 ms)" in title
    by_measure = {measure: (figure, target) for measure, figure, target in rows}
    figure, target = by_measure["urgent latency, send to outcome, lanes on: p50 / p99 / max"]
    assert figure == " / ".join(
        report.fmt_ms(v) for v in (on_p99_ms / 4, on_p99_ms, on_p99_ms + 10)
    )
    assert target == f"p99 < 250 ms ({'met' if latency_met else 'NOT met'})"
    assert by_measure["the same, lanes off (URGENT_TOPIC= blank)"][0] == (
        "625.0 ms / 2,500.0 ms / 2,510.0 ms"
    )
    throughput = by_measure[
        "backlog throughput, first to last backlog outcome: alone / lanes on / lanes off"
    ][0]
    assert throughput == f"20,000 / {20_000 * ratio:,.0f} / 18,000 msg/s"
    assert by_measure["backlog throughput with urgent traffic (lanes on) / alone"] == (
        f"{ratio:.2f}",
        f">= 0.9 ({'met' if ratio_met else 'NOT met'})",
    )
    judged = {item["name"]: item["met"] for item in report.targets(doc)}
    assert judged == {
        "urgent p99 latency while a backlog drains (lanes on)": latency_met,
        "backlog throughput with urgent traffic / without": ratio_met,
    }


def test_lanes_markdown_line_and_settings() -> None:
    doc = {**_doc(), "lanes": _lanes(120.0, 0.95)}
    section = report.markdown_section(doc)
    assert "| backlog throughput with urgent traffic (lanes on) / alone | 0.95 |" in section
    assert "- lanes: `PROVIDER_LATENCY=5ms`" in section
    assert report.LANES_METHOD in section
    assert report.lanes_line(doc["lanes"]) == (
        "lanes: urgent p99 120.0 ms on / 2,500.0 ms off; backlog 19,000 msg/s with urgent "
        "traffic, 20,000 msg/s without (ratio 0.95)"
    )
