"""Command line: argument parsing only; the work is done by the service and the producer."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import textwrap
import time
from collections.abc import Callable, Sequence

import trio

from .. import __version__
from ..config import VARIABLES, Settings, effective_environment, load_settings
from ..contract.errors import BackendError, BackendMisconfigured, ConfigError
from ..pipeline.replay import OUTCOMES, ReplayFilter, parse_since

log = logging.getLogger("pushtrio")


class _JsonFormatter(logging.Formatter):
    """One JSON object per line: structured logs a collector can parse."""

    def format(self, record: logging.LogRecord) -> str:
        document = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            document["exc"] = self.formatException(record.exc_info)
        return json.dumps(document)


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    name = "WARNING" if level == "warn" else level.upper()
    logging.getLogger("pushtrio").setLevel(name)
    # kafka-python logs "Topic ... not found in cluster metadata" as an error at every
    # metadata refresh (10 a second) while a topic is missing; the group monitor says
    # it once, with what it means, and /health keeps saying it.
    logging.getLogger("kafka.cluster").setLevel(logging.CRITICAL)
    logging.getLogger("kafka.coordinator").addFilter(_leave_group_of_a_gone_member)


def _leave_group_of_a_gone_member(record: logging.LogRecord) -> bool:
    """kafka-python logs an error when a member leaving the group is no longer in it
    (UnknownMemberId: a rebalance already removed it, typically when instances stop
    together). Nothing is wrong: the member is gone either way. Logged as info."""
    if (
        record.levelno >= logging.ERROR
        and "LeaveGroup" in str(record.msg)
        and "UnknownMemberId" in record.getMessage()
    ):
        record.levelno, record.levelname = logging.INFO, "INFO"
    return True


async def _watch_signals(stop: trio.Event) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            if stop.is_set():
                log.warning("second signal: exiting at once")
                os._exit(128 + signum)
            log.info("received %s: shutting down", signal.Signals(signum).name)
            stop.set()


async def _serve(settings: Settings) -> None:
    from ..service import Service

    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_watch_signals, stop)
        await Service(settings).serve(stop)
        nursery.cancel_scope.cancel()


def _cmd_serve(settings: Settings, _: argparse.Namespace) -> int:
    setup_logging(settings.log_level)
    status = 0
    try:
        trio.run(_serve, settings)
    except* ConfigError as group:
        log.error("cannot start: invalid setting %s", _first_leaf(group))
        status = 2
    except* OSError as group:
        log.error("cannot start: %s", _first_leaf(group))
        status = 1
    except* BackendMisconfigured as group:
        log.error("cannot start: %s (check the settings)", _first_leaf(group))
        status = 1
    except* BackendError as group:
        log.error("stopped: %s", _first_leaf(group))
        status = 1
    return status


def _first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first real error inside nested nursery exception groups."""
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


def _priority(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("expected an integer from 0 to 3") from None
    if not 0 <= value <= 3:
        raise argparse.ArgumentTypeError("expected an integer from 0 to 3")
    return value


def _cmd_produce(settings: Settings, args: argparse.Namespace) -> int:
    from .produce import ProduceOptions, run_produce

    setup_logging(settings.log_level)
    options = ProduceOptions(
        count=args.count,
        users=args.users,
        invalid_share=args.invalid,
        expired_share=args.expired,
        duplicate_share=args.duplicates,
        rate=args.rate,
        lanes=settings.lanes,
        topic=args.topic,
        priority=args.priority,
        file=args.file,
        prefix=args.id_prefix or f"gen-{int(time.time())}",
        progress=not args.quiet,
    )
    try:
        written = run_produce(settings.kafka_brokers, options)
    except BackendError as exc:
        print(f"pushtrio produce: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"pushtrio produce: {exc}", file=sys.stderr)
        return 2
    if not args.quiet:
        where = ", ".join(f"{n} to {topic}" for topic, n in sorted(written.items()))
        print(f"wrote {sum(written.values())} records: {where or 'none'}")
    return 0


def _cmd_replay(settings: Settings, args: argparse.Namespace) -> int:
    from .replay import print_report, run_replay

    setup_logging(settings.log_level)
    # A failure ends the run with one line saying what could not be read or written;
    # kafka-python's own per-attempt connection errors would only repeat it.
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    chosen = ReplayFilter(
        outcome=args.outcome or "",
        reason=args.reason,
        since_ms=args.since,
        ids=frozenset(args.id),
        limit=args.limit,
        dry_run=args.dry_run,
    )
    started = time.monotonic()
    try:
        report = run_replay(
            settings.kafka_brokers,
            settings.kafka_topic,
            settings.dlq_topic,
            chosen,
            progress=not (args.quiet or args.json),
        )
    except BackendError as exc:
        print(f"pushtrio replay: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"pushtrio replay: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pushtrio replay: interrupted (letters written so far stay written)", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(report.to_json()))
    elif not args.quiet:
        print_report(report, time.monotonic() - started)
    return 0


def _cmd_watch(settings: Settings, args: argparse.Namespace) -> int:
    from ..sinks.events import parse_event_filter
    from .watch import Tally, WatchError, WatchOptions, run_watch_until_signalled

    try:
        parse_event_filter(args.event)
    except ValueError as exc:
        print(f"pushtrio watch: {exc}", file=sys.stderr)
        return 2
    options = WatchOptions(
        url=args.url or f"ws://127.0.0.1:{settings.port}",
        user_id=args.user_id,
        events=args.event,
        token=settings.admin_token if args.token is None else args.token,
        count=args.count,
        raw_json=args.json,
    )
    tally = Tally()
    status = 0
    try:
        trio.run(
            run_watch_until_signalled,
            options,
            tally,
            lambda line: print(line, flush=True),
            lambda line: print(line, file=sys.stderr, flush=True),
        )
    except* WatchError as group:
        for error in group.exceptions:
            print(f"pushtrio watch: {error}", file=sys.stderr)
        status = 1
    except* KeyboardInterrupt:
        # Ctrl-C before the signal receiver is open (or after it closed).
        tally.stopped_by(signal.SIGINT)
    print(tally.summary(), file=sys.stderr)
    # Ended by a signal: the shell's convention, 128 + its number (130, 143).
    return tally.exit_status or status


def _cmd_config(settings: Settings, _: argparse.Namespace) -> int:
    # main() has already refused a bad variable, exactly as for serve.
    for name, value in effective_environment():
        print(f"{name}={value}")
    for notice in settings.notices:
        print(f"pushtrio config: {notice}", file=sys.stderr)
    return 0


def environment_help() -> str:
    """The environment variables, their defaults and help text, from the settings table."""

    def blank(meaning: str) -> str:
        return ", ".join(v.name for v in VARIABLES if v.kind.blank == meaning)

    intro = (
        "Environment variables (`pushtrio config` prints their effective values). "
        "Durations: 500ms, 30s, 1m, 1h30m or plain seconds. A blank value means the "
        f"default, except for {blank('refused')} (an error) and {blank('kept')} (kept)."
    )
    lines = [textwrap.fill(intro, 79), ""]
    for variable in VARIABLES:
        lines.append(f"  {variable.name} (default: {variable.default_text})")
        lines.append(f"      {variable.help}")
    return "\n".join(lines)


def _count_from(low: int) -> Callable[[str], int]:
    """An argparse type: an integer count of at least ``low``."""

    def parse(text: str) -> int:
        value = int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"expected a count >= {low}")
        return value

    return parse


_count = _count_from(0)
_positive = _count_from(1)


def _share(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("expected a share from 0 to 1")
    return value


def _since(text: str) -> int:
    try:
        return parse_since(text, int(time.time() * 1000))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_replay(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    replay = commands.add_parser(
        "replay",
        help="write dead letters back to the Kafka topic",
        description="Write the letters of DLQ_TOPIC back to KAFKA_TOPIC: the original key, "
        "value and headers, plus pushtrio-replayed-from ([dlq_topic, partition, offset]). "
        "Filters combine; without any, every letter is replayed. A notification delivered "
        "meanwhile comes out as `duplicate`, not as a second send. Letters whose value was "
        "left out (over 512 KiB) are skipped and listed. Reads the topic without a consumer "
        "group, up to its end when the run starts.",
    )
    replay.add_argument("--outcome", choices=OUTCOMES, help="only letters of this outcome")
    replay.add_argument(
        "--reason", default="", metavar="TEXT", help="only letters whose reason contains TEXT"
    )
    replay.add_argument(
        "--since",
        type=_since,
        default=None,
        metavar="TIME",
        help="only letters written since TIME: RFC 3339 (2030-01-01T00:00:00Z) or a "
        "duration ago (30m, 24h)",
    )
    replay.add_argument(
        "--id", action="append", default=[], metavar="ID", help="only this id (repeatable)"
    )
    replay.add_argument("--limit", type=_positive, default=None, metavar="N", help="at most N")
    replay.add_argument(
        "--dry-run", action="store_true", help="print what would be replayed; write nothing"
    )
    replay.add_argument("--json", action="store_true", help="print the report as JSON")
    replay.add_argument("-q", "--quiet", action="store_true", help="no progress bar, no report")
    replay.set_defaults(run=_cmd_replay)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pushtrio",
        description="Push-notification delivery on Trio. Configuration comes from the "
        "environment (listed by `pushtrio serve --help`, shown by `pushtrio config`); "
        "KAFKA_BROKERS and REDIS_ADDR default to embedded backends.",
    )
    parser.add_argument("--version", action="version", version=f"pushtrio {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="run the service",
        description="Run the service, configured by the environment variables below.",
        epilog=environment_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.set_defaults(run=_cmd_serve)
    config = commands.add_parser(
        "config", help="print the effective settings (NAME=value, secrets masked)"
    )
    config.set_defaults(run=_cmd_config)
    produce = commands.add_parser(
        "produce", help="write generated (or given) notifications to the Kafka topic"
    )
    produce.add_argument("-n", "--count", type=int, default=1000, help="records to write")
    produce.add_argument("--users", type=int, default=100, help="distinct user ids")
    produce.add_argument("--invalid", type=_share, default=0.0, help="share of invalid records")
    produce.add_argument("--expired", type=_share, default=0.0, help="share of expired records")
    produce.add_argument(
        "--duplicates", type=_share, default=0.0, help="share of records repeating an earlier id"
    )
    produce.add_argument("--rate", type=float, default=0.0, help="records per second (0: flat out)")
    produce.add_argument(
        "--topic",
        default="",
        help="write every record to this topic (default: KAFKA_TOPIC, or URGENT_TOPIC for "
        "priorities of URGENT_PRIORITY or more)",
    )
    produce.add_argument(
        "--priority",
        type=_priority,
        default=None,
        help="priority of every generated notification, 0-3 (default: a mix)",
    )
    produce.add_argument("--id-prefix", default="", help="prefix of generated ids")
    produce.add_argument(
        "--file", default="", help="write the JSON lines of this file ('-': stdin) instead"
    )
    produce.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    produce.set_defaults(run=_cmd_produce)
    _add_replay(commands)
    watch = commands.add_parser("watch", help="follow the live outcome feed (WS /ws/events)")
    watch.add_argument("--url", default="", help="service URL (default: ws://127.0.0.1:$PORT)")
    watch.add_argument("--user-id", default="", help="only this user's outcomes")
    watch.add_argument(
        "--event", default="", help="only these kinds, comma-separated (e.g. delivered,failed)"
    )
    watch.add_argument("--token", default=None, help="admin token (default: $ADMIN_TOKEN)")
    watch.add_argument(
        "-n", "--count", type=_count, default=0, help="stop after N outcomes (0: never)"
    )
    watch.add_argument("--json", action="store_true", help="print the raw JSON frames")
    watch.set_defaults(run=_cmd_watch)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"pushtrio: invalid setting {exc}", file=sys.stderr)
        return 2
    status: int = args.run(settings, args)
    return status


if __name__ == "__main__":
    sys.exit(main())
