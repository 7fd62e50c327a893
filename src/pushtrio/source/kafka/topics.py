"""Creating the delay topics next to the main topic, with its partition count.

Several instances may start together: a topic another one created meanwhile is
fine. Replication and the rest are the broker's defaults.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from typing import Any

from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

log = logging.getLogger(__name__)


def ensure_topics(admin: Any, names: Sequence[str], partitions: int, timeout_ms: int) -> list[str]:
    """Create those of ``names`` that do not exist; return the ones this call created.

    Raises KafkaError when the broker refuses (not authorised, bad settings).
    """
    existing = set(admin.list_topics())
    created = []
    for name in names:
        if name in existing:
            continue
        try:
            admin.create_topics(
                [NewTopic(name, num_partitions=partitions, replication_factor=-1)],
                timeout_ms=timeout_ms,
            )
        except TopicAlreadyExistsError:
            continue
        created.append(name)
    if created:
        log.info(
            "created %s with %d partition%s",
            ", ".join(created),
            partitions,
            "" if partitions == 1 else "s",
        )
    return created


def stray_tiers(existing: Iterable[str], topic: str, known: Sequence[str]) -> list[str]:
    """Retry tiers of ``topic`` that exist but are not in ``known``, in tier order.

    A service restarted with a lower RETRY_ATTEMPTS still reads them (their records
    end ``failed`` if they fail again), or they would wait there for ever.
    """
    tier = re.compile(re.escape(topic) + r"\.retry\.(\d+)")
    found = [(int(m.group(1)), name) for name in existing if (m := tier.fullmatch(name))]
    return [name for _, name in sorted(found) if name not in known]
