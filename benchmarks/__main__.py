"""``python -m benchmarks``: measure pushtrio against the kafka-python ceiling in one run.

    python -m benchmarks                      full run (200,000 records, 20 s per rate)
    python -m benchmarks --quick              100,000 records, 10 s per rate (about a minute)
    python -m benchmarks --json out.json --markdown BENCHMARKS.md
    python -m benchmarks --from-json out.json --markdown BENCHMARKS.md   (re-render only)
    python -m benchmarks --quick --phases providers   real delivery through the local fakes

Starts Redis and Kafka with scripts/services.sh if they do not answer (and stops
them at the end only then); every ``pushtrio serve`` it starts is stopped on any
exit, Ctrl-C and SIGTERM included.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from types import FrameType
from typing import Any

import trio
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from pushtrio.cli.produce import ProduceOptions, generate

from . import report
from .ceiling import measure_ceiling
from .context import Bench
from .dedup_fresh import measure_fresh
from .delays import DEFER_PER_USER, DEFER_USERS, run_defer, run_outage
from .environment import Services, kafka_addr, machine_info, redis_addr
from .feed import BURST, run_feed
from .kafka_io import Kafka
from .lanes import BACKLOG, run_lanes
from .latency import run_latency
from .pipeline import run_throughput
from .providers import run_providers
from .serve import BenchmarkError
from .stats import rate_limit_for_third

PHASES = (
    "ceiling",
    "pipeline",
    "mix",
    "latency",
    "feed",
    "outage",
    "defer",
    "providers",
    "dedup",
    "lanes",
)
OUTAGE_MESSAGES = 50_000
PROVIDER_MESSAGES = 20_000
QUICK_PROVIDER_MESSAGES = 5_000
QUICK_MESSAGES = 100_000
QUICK_LATENCY_S = 10.0
MIX_USERS = 10_000
MIX_INVALID = 0.02
MIX_EXPIRED = 0.01
MIX_SETTINGS = {
    "PROVIDER_LATENCY": "5ms",
    "PROVIDER_SUCCESS_RATE": "0.95",
    "RETRY_DELAY": "50ms",
    "RATE_LIMIT_WINDOW": "1h",
}
LATENCY_SETTINGS = {"PROVIDER_LATENCY": "5ms", "PROVIDER_SUCCESS_RATE": "1"}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Throughput, latency and memory of pushtrio serve against the ceiling "
        "of a bare kafka-python consumer, on real Kafka and Redis.",
    )
    parser.add_argument(
        "--messages",
        type=int,
        help=f"records per throughput phase (default 200,000; {QUICK_MESSAGES:,} with --quick)",
    )
    parser.add_argument("--quick", action="store_true", help="a short run (about a minute)")
    parser.add_argument(
        "--provider-messages",
        type=int,
        help=f"notifications per run of the providers phase (default {PROVIDER_MESSAGES:,}; "
        f"{QUICK_PROVIDER_MESSAGES:,} with --quick)",
    )
    parser.add_argument(
        "--rates",
        default="1000,5000",
        help="offered rates of the latency phase, msg/s (default 1000,5000)",
    )
    parser.add_argument(
        "--latency-seconds",
        type=float,
        help=f"seconds per offered rate (default 20; {QUICK_LATENCY_S:g} with --quick)",
    )
    parser.add_argument(
        "--latency-runs",
        type=int,
        default=3,
        help="runs of the latency phase; the median run (by p99 at 5,000 msg/s) is "
        "reported, with every run's p99 (default 3)",
    )
    parser.add_argument(
        "--linger-ms",
        type=int,
        default=5,
        help="linger of the latency phase's producer (default 5; 0 sends each record at "
        "once but costs kafka-python most of a core)",
    )
    parser.add_argument(
        "--phases",
        default=",".join(PHASES),
        help=f"which phases to run (default {','.join(PHASES)})",
    )
    parser.add_argument("--json", type=Path, help="write all figures as JSON to this path")
    parser.add_argument(
        "--markdown",
        type=Path,
        help="write the figures section of this markdown file (BENCHMARKS.md)",
    )
    parser.add_argument(
        "--from-json", type=Path, help="do not measure: print and render a saved JSON document"
    )
    parser.add_argument(
        "--serve-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for every pushtrio serve (repeatable), e.g. WORKER_COUNT=20",
    )
    parser.add_argument(
        "--redis-db",
        type=int,
        default=9,
        help="Redis database the benchmark flushes and uses (default 9)",
    )
    parser.add_argument(
        "--keep-logs", action="store_true", help="keep the serve and outcome logs (printed folder)"
    )
    args = parser.parse_args(argv)
    args.phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    unknown = set(args.phases) - set(PHASES)
    if unknown:
        parser.error(f"unknown phase(s) {', '.join(sorted(unknown))}; choose from {PHASES}")
    try:
        args.rates = [float(r) for r in args.rates.split(",") if r.strip()]
    except ValueError:
        parser.error(f"--rates: expected numbers such as 1000,5000, not {args.rates!r}")
    if any(r <= 0 for r in args.rates):
        parser.error("--rates must be positive")
    if args.messages is None:
        args.messages = QUICK_MESSAGES if args.quick else 200_000
    if args.messages < MIX_USERS:
        parser.error(f"--messages must be at least {MIX_USERS:,} (one per user of the mix)")
    if args.provider_messages is None:
        args.provider_messages = QUICK_PROVIDER_MESSAGES if args.quick else PROVIDER_MESSAGES
    if args.provider_messages < 2:
        parser.error("--provider-messages must be at least 2")
    if args.latency_seconds is None:
        args.latency_seconds = QUICK_LATENCY_S if args.quick else 20.0
    args.serve_env_map = {}
    for item in args.serve_env:
        name, sep, value = item.partition("=")
        if not sep or not name:
            parser.error(f"--serve-env expects NAME=VALUE, not {item!r}")
        args.serve_env_map[name] = value
    return args


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _records(count: int, prefix: str, **shares: Any) -> list[tuple[bytes, bytes]]:
    options = ProduceOptions(count=count, prefix=prefix, progress=False, seed=42, **shares)
    return list(generate(options))


def run_phases(bench: Bench, args: argparse.Namespace, doc: dict[str, Any]) -> None:
    """Run the chosen phases in order, adding each one's figures to ``doc``."""
    console = bench.progress.console
    n = args.messages
    timeout_s = 120.0 + n / 500.0
    # The shared records serve only the first two phases.
    records = _records(n, "bench", users=1000) if {"ceiling", "pipeline"} & set(args.phases) else []
    if "ceiling" in args.phases:
        topic, group = bench.new_topic("ceiling")
        produce_s = bench.produce(topic, records, "ceiling: produce")
        task = bench.progress.add_task("ceiling: consume", total=len(records))
        ceiling = measure_ceiling(
            bench.kafka_addr,
            topic,
            group,
            len(records),
            lambda read: bench.progress.update(task, completed=read),
            timeout_s=timeout_s,
        )
        doc["ceiling"] = {**asdict(ceiling), "produce_s": produce_s}
        console.print(f"ceiling: {report.fmt_rate(ceiling.rate_total)}")
    if "pipeline" in args.phases:
        result = run_throughput(bench, "pipeline", records, {}, timeout_s)
        doc["pipeline"] = asdict(result)
        if "ceiling" in doc:
            doc["pipeline"]["ratio_total"] = result.rate_total / doc["ceiling"]["rate_total"]
            doc["pipeline"]["ratio_processing"] = (
                result.rate_processing / doc["ceiling"]["rate_read"]
            )
        console.print(f"pipeline: {report.fmt_rate(result.rate_total)} incl. start-up")
    del records
    if "mix" in args.phases:
        limit = rate_limit_for_third(n, MIX_USERS, MIX_INVALID + MIX_EXPIRED)
        mix_records = _records(
            n, "mix", users=MIX_USERS, invalid_share=MIX_INVALID, expired_share=MIX_EXPIRED
        )
        settings = {**MIX_SETTINGS, "RATE_LIMIT_PER_USER": str(limit)}
        result = run_throughput(bench, "mix", mix_records, settings, timeout_s)
        doc["mix"] = {**asdict(result), "users": MIX_USERS, "rate_limit_per_user": limit}
        console.print(f"mix: {report.fmt_rate(result.rate_total)} incl. start-up")
    if "latency" in args.phases:
        runs = [
            run_latency(
                bench,
                args.rates,
                args.latency_seconds,
                LATENCY_SETTINGS,
                args.linger_ms,
                phase=f"latency-{n}",
            )
            for n in range(1, args.latency_runs + 1)
        ]
        doc["latency"] = report.median_latency_run([asdict(run) for run in runs])
        for rate, p99s in doc["latency"]["p99_runs_ms"].items():
            console.print(
                f"latency at {float(rate):,.0f}/s: p99 "
                + " / ".join(report.fmt_ms(p99) for p99 in p99s)
            )
    if "feed" in args.phases:
        feed = run_feed(bench, _records(BURST, "feed", users=1000))
        doc["feed"] = asdict(feed)
        for run in feed.runs:
            console.print(
                f"feed ({'batch' if run.batch else 'one event a frame'}): "
                f"received {min(run.received):,} to {max(run.received):,} of {feed.burst:,}"
            )
    if "outage" in args.phases:
        outage_records = _records(min(n, OUTAGE_MESSAGES), "outage", users=1000)
        outage = run_outage(bench, outage_records, timeout_s)
        doc["outage"] = asdict(outage)
        console.print(f"outage: the others at {outage.ratio:.2f} of their healthy throughput")
    if "defer" in args.phases:
        defer_records = _records(DEFER_USERS * DEFER_PER_USER, "defer", users=DEFER_USERS)
        deferral = run_defer(bench, defer_records, timeout_s)
        doc["defer"] = asdict(deferral)
        console.print(
            f"defer: {deferral.outcomes} in {report.fmt_s(deferral.seconds)}, "
            f"at most {deferral.most_in_a_window} per user in a window"
        )
    if "dedup" in args.phases:
        fresh = trio.run(measure_fresh)
        doc["dedup"] = [
            {**asdict(store), "bytes_per_id": {str(n): b for n, b in store.bytes_per_id.items()}}
            for store in fresh
        ]
        console.print(
            "dedup, fresh store: "
            + ", ".join(
                f"{store.rate:,.0f}/s {store.bytes_per_id[max(store.bytes_per_id)]:.1f} B/id"
                for store in fresh
            )
        )
    if "providers" in args.phases:
        providers = run_providers(bench, args.provider_messages)
        doc["providers"] = asdict(providers)
        console.print(
            "providers: "
            + ", ".join(f"{run.label} {report.fmt_rate(run.rate)}" for run in providers.runs)
        )
    if "lanes" in args.phases:
        # --messages may make the backlog smaller; --quick leaves it (see BACKLOG).
        backlog = _records(min(n, BACKLOG), "lanes", users=1000, priority=0)
        lanes = run_lanes(bench, backlog, timeout_s)
        doc["lanes"] = asdict(lanes)
        console.print(report.lanes_line(doc["lanes"]))


def measure(args: argparse.Namespace, console: Console, argv: Sequence[str]) -> dict[str, Any]:
    """One full measuring run; returns the JSON document. Cleans up on any exit."""
    started = time.perf_counter()
    doc: dict[str, Any] = {
        "schema": report.SCHEMA,
        "command": shlex.join(["python", "-m", "benchmarks", *argv]),
        "options": {
            "messages": args.messages,
            "provider_messages": args.provider_messages,
            "quick": args.quick,
            "rates": args.rates,
            "latency_seconds": args.latency_seconds,
            "linger_ms": args.linger_ms,
            "phases": args.phases,
            "redis_db": args.redis_db,
            "serve_env": args.serve_env_map,
        },
    }
    workdir = Path(tempfile.mkdtemp(prefix="pushtrio-bench-"))
    keep_logs = args.keep_logs
    with contextlib.ExitStack() as stack:
        services = Services(console)
        stack.callback(services.close)
        services.ensure()
        doc["machine"] = machine_info(redis_addr())
        kafka = Kafka(kafka_addr())
        stack.callback(kafka.close)
        stack.callback(kafka.delete_created_topics)
        progress = stack.enter_context(
            Progress(
                TextColumn("{task.description:<28}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
            )
        )
        bench = Bench(
            kafka_addr=kafka_addr(),
            redis_addr=redis_addr(),
            redis_db=args.redis_db,
            kafka=kafka,
            workdir=workdir,
            progress=progress,
            run_id=uuid.uuid4().hex[:8],
            serve_overrides=args.serve_env_map,
        )
        try:
            run_phases(bench, args, doc)
        except BaseException:
            keep_logs = True
            raise
        finally:
            if keep_logs:
                console.print(f"serve and outcome logs kept in {workdir}")
            else:
                shutil.rmtree(workdir, ignore_errors=True)
    doc["duration_s"] = time.perf_counter() - started
    doc["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    doc["targets"] = report.targets(doc)
    return doc


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    # A pipe gets 80 columns by default: too narrow for the table.
    console = Console(width=None if sys.stdout.isatty() else 120)
    if args.from_json:
        doc = report.read_json(args.from_json)
    else:
        # Ctrl-C even when started with SIGINT ignored (a background job); SIGTERM and
        # SIGHUP take the same way out, so every child process is stopped.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for signum in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, _raise_interrupt)
        try:
            doc = measure(args, console, argv)
        except BenchmarkError as exc:
            console.print(f"[red]benchmark failed:[/] {exc}")
            return 1
        except KeyboardInterrupt:
            console.print("[yellow]interrupted: child processes stopped[/]")
            return 130
    report.print_table(console, doc)
    console.print(f"run took {float(doc.get('duration_s', 0.0)):.0f} s")
    if args.json:
        report.write_json(args.json, doc)
        console.print(f"figures written to {args.json}")
    if args.markdown:
        report.update_markdown(args.markdown, doc)
        console.print(f"figures section of {args.markdown} updated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
