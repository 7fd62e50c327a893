"""Push providers: one small interface, mock twins for FCM, APNs and Firebase."""

from __future__ import annotations

from typing import Protocol

from ..model import Notification


class Provider(Protocol):
    """Delivers one notification or raises a ProviderError.

    Raises TransientProviderError for failures worth retrying and
    PermanentProviderError for those that will never pass.
    """

    name: str

    async def send(self, notification: Notification, attempt: int) -> None: ...
