"""Files a child process writes: outcome logs (JSON lines) and plain logs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from .waiting import wait_for


class LineTail:
    """Reads a file as another process appends to it: each call, the new whole lines.

    A half-written last line waits for the next call; a missing file has no lines yet.
    Reading starts at byte ``offset`` (the end of what was there before, say).
    """

    def __init__(self, path: Path, offset: int = 0) -> None:
        self.path = path
        self._offset = offset
        self._partial = b""

    def read_new(self) -> list[bytes]:
        """The whole lines appended since the last call (without their newlines)."""
        try:
            with open(self.path, "rb") as stream:
                stream.seek(self._offset)
                chunk = stream.read()
        except FileNotFoundError:
            return []
        self._offset += len(chunk)
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()
        return lines


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every JSON line of ``path`` (none when it does not exist yet)."""
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def count_lines(path: Path) -> int:
    """Whole lines in ``path`` so far (0 when it does not exist yet)."""
    return path.read_bytes().count(b"\n") if path.exists() else 0


def wait_lines(path: Path, n: int, timeout_s: float) -> None:
    """Wait until ``path`` holds at least ``n`` lines; AssertionError after ``timeout_s``."""
    wait_for(lambda: count_lines(path) >= n, timeout_s, f"{n} lines in {path}", every_s=0.02)


def tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of ``path``, for a failure message."""
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError as exc:
        return f"(no {path}: {exc})"
    return "\n".join(text[-lines:])
