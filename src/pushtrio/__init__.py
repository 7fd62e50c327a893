"""pushtrio: push-notification delivery on Trio, from Kafka (or an embedded queue) to providers."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
