"""What one notification did on a user's devices: a value the outcome and the
provider errors both carry (a leaf, so that neither imports the other)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class DeviceCounts:
    """What one notification did on the user's devices (real providers only)."""

    accepted: int = 0
    failed: int = 0
    pruned: int = 0
    """Tokens the provider called dead, removed from the registry."""

    def to_dict(self) -> dict[str, int]:
        return {"accepted": self.accepted, "failed": self.failed, "pruned": self.pruned}
