"""The service: the one place that reads the settings and wires the nursery tree.

- :mod:`.lifecycle`: :class:`Service`, start-up order and shutdown order
- :mod:`.backends`: Kafka or the embedded queue, Redis or the embedded stores
- :mod:`.guards`: join the group only when the backends answer; leave it while refused
- :mod:`.health`: the /health document
"""

from __future__ import annotations

from .lifecycle import Service

__all__ = ["Service"]
