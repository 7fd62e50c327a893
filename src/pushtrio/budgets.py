"""The time budgets derived from PROVIDER_TIMEOUT, all in one table.

PROVIDER_TIMEOUT bounds one provider call of the pipeline. Every wait inside it is
a share of it, nested so that each inner limit runs out before the one around it
(which would otherwise cancel it and throw its answers away):

  request_s          httpx's timeouts of one wire request (a send, a token exchange)
  < send_deadline_s  the wire client's own trio deadline around one request: httpx's
                     read timeout comes first, and a trio cancellation would leave
                     the connection, stalled streams and all, in the pool
  < device_deadline_s  the pushes of one notification to its devices: tokens not
                     answered by then are transient failures, the answers kept;
                     a token exchange and the send after it (2 x request_s) fit
  < provider_call_s  PROVIDER_TIMEOUT itself: the pipeline's limit on one call
  <= probe_wait_s    how long a parked notification waits for a half-open breaker's
                     probes, which may take a whole provider call

A leaf module: providers, the pipeline and the service take their numbers from it.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_PROVIDER_TIMEOUT_S = 10.0
REQUEST_SHARE = 0.4
"""One wire request's share of PROVIDER_TIMEOUT."""
SEND_DEADLINE_FACTOR = 1.5
"""The wire client's deadline around one request, in units of its request timeout."""
DEVICE_SHARE = 0.9
"""The share of PROVIDER_TIMEOUT that one notification's pushes may take."""


def send_deadline_s(request_s: float) -> float:
    """The trio deadline a wire client puts around one request timed at ``request_s``."""
    return request_s * SEND_DEADLINE_FACTOR


@dataclass(frozen=True, slots=True)
class TimeBudgets:
    """Every wait derived from one provider timeout (see the module's table)."""

    provider_call_s: float
    request_s: float
    send_deadline_s: float
    device_deadline_s: float
    probe_wait_s: float

    @classmethod
    def from_provider_timeout(cls, timeout_s: float) -> TimeBudgets:
        """The budgets for PROVIDER_TIMEOUT ``timeout_s`` (seconds)."""
        request_s = timeout_s * REQUEST_SHARE
        return cls(
            provider_call_s=timeout_s,
            request_s=request_s,
            send_deadline_s=send_deadline_s(request_s),
            device_deadline_s=timeout_s * DEVICE_SHARE,
            probe_wait_s=timeout_s,
        )


DEFAULT_BUDGETS = TimeBudgets.from_provider_timeout(DEFAULT_PROVIDER_TIMEOUT_S)
