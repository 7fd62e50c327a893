"""A test that cannot run here: skipped, or failed when the run requires everything.

``scripts/test.sh`` sets PUSHTRIO_REQUIRE_SERVICES: a missing service or tool is then
an error, not a silent skip.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def required() -> bool:
    """Whether this run requires every service and tool (PUSHTRIO_REQUIRE_SERVICES)."""
    return bool(os.environ.get("PUSHTRIO_REQUIRE_SERVICES"))


def unavailable(message: str) -> NoReturn:
    """Fail with ``message`` if the run requires everything, else skip with it."""
    if required():
        pytest.fail(message)
    pytest.skip(message)
