"""``promtool check metrics`` (Debian package prometheus) accepts the Prometheus scrape.

promtool parses the exposition and lints it (metric types, suffixes, the
``quantile`` label reserved for summaries, units); it exits 0 and prints nothing
when the scrape is clean. scripts/test.sh installs it when missing.
"""

from __future__ import annotations

import shutil

import trio
from prometheus_client.parser import text_string_to_metric_families

from pushtrio.config import PROVIDER_NAMES

from ..support.requirements import unavailable
from ..support.waiting import wait_until
from .conftest import notification, run_service


def _require_promtool() -> str:
    promtool = shutil.which("promtool")
    if promtool is None:
        unavailable("needs promtool (apt-get install prometheus)")
    return promtool


async def run_promtool(promtool: str, scrape: bytes) -> tuple[int, str]:
    """``promtool check metrics`` on ``scrape``: its exit status and output."""
    with trio.fail_after(30):
        result = await trio.run_process(
            [promtool, "check", "metrics"],
            stdin=scrape,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    return result.returncode, (result.stdout + result.stderr).decode()


async def check_metrics(promtool: str, scrape: bytes) -> str:
    """promtool's verdict on ``scrape``: its output, empty when the scrape is clean."""
    status, output = await run_promtool(promtool, scrape)
    assert status == 0, output
    return output


async def test_promtool_accepts_the_scrape_before_and_after_traffic() -> None:
    promtool = _require_promtool()
    # One provider fails half of its calls, so failures and retries are counted too.
    rates = tuple((name, 0.5 if name == "fcm" else 1.0) for name in PROVIDER_NAMES)
    async with run_service(provider_success_rates=rates) as running, running.client() as client:
        before = (await client.get("/metrics/prometheus")).content
        for i in range(12):  # 10 per user per hour: 2 are rate limited
            response = await client.post("/send", json=notification("carol", id=f"c{i}"))
            assert response.status_code == 202
        for i in range(6):  # the urgent lane (priority 3)
            document = notification(f"u{i}", provider="fcm", priority=3)
            response = await client.post("/send", json=document)
            assert response.status_code == 202
        expired = notification("bob", expires_at="2001-01-01T00:00:00Z")
        assert (await client.post("/send", json=expired)).status_code == 202
        await wait_until(lambda: running.service.metrics.processed == 19, what="19 outcomes")
        after = (await client.get("/metrics/prometheus")).content

    assert await check_metrics(promtool, before) == ""
    assert await check_metrics(promtool, after) == ""
    families = {f.name: f for f in text_string_to_metric_families(after.decode())}
    assert families["pushtrio_latency_window_seconds"].type == "summary"
    assert families["process_resident_memory_bytes"].samples[0].value > 0
    outcomes = {s.labels["outcome"]: s.value for s in families["pushtrio_outcomes"].samples}
    assert outcomes["rate_limited"] == 2
    assert outcomes["expired"] == 1
    lanes = families["pushtrio_lane_latency_seconds"]
    assert lanes.type == "summary"
    counts = {s.labels["lane"]: s.value for s in lanes.samples if s.name.endswith("_count")}
    assert counts == {"urgent": 6, "main": 13}
    backlog = families["pushtrio_lane_backlog"]
    assert {s.labels["lane"]: s.value for s in backlog.samples} == {"urgent": 0, "main": 0}


async def test_promtool_reports_what_the_issue_reported() -> None:
    """The check is not vacuous: a gauge with a quantile label is refused."""
    promtool = _require_promtool()
    scrape = b'# HELP x_seconds Latency.\n# TYPE x_seconds gauge\nx_seconds{quantile="0.5"} 1.0\n'
    status, output = await run_promtool(promtool, scrape)
    assert status != 0
    assert 'should not have "quantile" label' in output
