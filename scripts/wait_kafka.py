"""Wait until the test Kafka broker answers a client, or fail with its log.

Used by scripts/services.sh: retries ``KafkaAdminClient(...).list_topics()`` until it
succeeds or the deadline passes. Exit status 0 when the broker answers, 1 otherwise
(the tail of the broker's log is printed to stderr to show why).

    python scripts/wait_kafka.py 127.0.0.1:19092 [--timeout 120] [--pid N] [--log FILE]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path


def _alive(pid: int | None) -> bool:
    if pid is None:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _tail(log: Path | None, lines: int = 60) -> None:
    if log is None:
        return
    try:
        text = log.read_text(errors="replace").splitlines()
    except OSError as exc:
        print(f"(no log at {log}: {exc})", file=sys.stderr)
        return
    print(f"--- last {lines} lines of {log} ---", file=sys.stderr)
    for line in text[-lines:]:
        print(line, file=sys.stderr)


def probe(bootstrap: str, timeout_s: float) -> list[str]:
    """One attempt: the topic names, or an exception."""
    from kafka.admin import KafkaAdminClient

    ms = max(1000, int(timeout_s * 1000))
    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap,
        client_id="pushtrio-wait",
        bootstrap_timeout_ms=ms,
        request_timeout_ms=ms,
    )
    try:
        return list(admin.list_topics())
    finally:
        admin.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bootstrap", help="host:port of the broker")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds (default 120)")
    parser.add_argument("--pid", type=int, help="broker pid: give up at once if it exits")
    parser.add_argument("--log", type=Path, help="broker log to show on failure")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    args = parser.parse_args(argv)

    try:
        import kafka.admin  # noqa: F401
    except ImportError as exc:
        print(f"kafka: {sys.executable} cannot import kafka-python ({exc})", file=sys.stderr)
        return 2

    # kafka-python logs every refused connection at WARNING/ERROR; the progress
    # lines below say enough.
    logging.basicConfig(level=logging.CRITICAL)

    start = time.monotonic()
    deadline = start + args.timeout
    attempt = 0
    last_error = "no attempt made"
    while True:
        attempt += 1
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        if not _alive(args.pid):
            print(f"kafka: broker process {args.pid} exited", file=sys.stderr)
            _tail(args.log)
            return 1
        try:
            topics = probe(args.bootstrap, min(2.0, remaining))
        except Exception as exc:  # any failure means "not yet"
            last_error = f"{type(exc).__name__}: {exc}"
            if not args.quiet and attempt % 6 == 1:
                elapsed = time.monotonic() - start
                print(f"kafka: waiting for {args.bootstrap} ({elapsed:.0f}s, {last_error})")
            time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
            continue
        if not args.quiet:
            elapsed = time.monotonic() - start
            print(f"kafka: {args.bootstrap} answers after {elapsed:.1f}s ({len(topics)} topics)")
        return 0

    print(
        f"kafka: {args.bootstrap} not ready after {args.timeout:.0f}s (last error: {last_error})",
        file=sys.stderr,
    )
    _tail(args.log)
    return 1


if __name__ == "__main__":
    sys.exit(main())
