"""What the Kafka reader reports about itself: connected, paused, its last error.

The reader thread writes it, ``/health`` reads it from the trio thread. Each field
is replaced whole (a bool, or a frozen :class:`ReaderError`), so a reader from
another thread sees either the old value or the new one.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class ErrorKind(enum.Enum):
    """Which step of the reader failed; a later success of that step clears it."""

    CONNECT = "connect"
    """The brokers could not be reached at start-up."""
    DECODE = "decode"
    """A record batch the client cannot decode, its partition unknown."""
    POLL = "poll"
    COMMIT = "commit"
    CRASH = "crash"
    """The reader thread ended with an unexpected error."""


@dataclass(frozen=True, slots=True)
class ReaderError:
    kind: ErrorKind
    message: str
    """One line for an operator, as shown by ``/health``."""


@dataclass(slots=True)
class ReaderStatus:
    """The reader's state as ``/health`` shows it."""

    connected: bool = False
    """The consumer is open (from start-up until the thread closes it)."""
    paused: bool = False
    """Every partition is paused: the workers are behind, or intake has stopped."""
    error: ReaderError | None = None

    def fail(self, kind: ErrorKind, message: str) -> ReaderError:
        """Record the error of a failed ``kind`` step and return it."""
        self.error = ReaderError(kind, message)
        return self.error

    def clear(self, kind: ErrorKind) -> None:
        """A ``kind`` step succeeded: forget its error, keep any other."""
        error = self.error
        if error is not None and error.kind is kind:
            self.error = None
