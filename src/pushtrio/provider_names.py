"""The provider names, in one place: the message contract and the settings both use them."""

from __future__ import annotations

PROVIDERS = ("fcm", "apns", "firebase")
"""Every provider a notification may name, in the order ``/health`` and ``/metrics`` list them."""
