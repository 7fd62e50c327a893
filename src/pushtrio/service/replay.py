"""The service's dead-letter replay (``POST /dlq/replay``), on its own publisher."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from ..contract.records import Publisher
from ..pipeline.replay import ReplayFilter, ReplayReport, replay_letters
from ..source.kafka.letters import open_kafka_letters
from ..source.memory import MemoryBroker, MemoryLetters

Replay = Callable[[ReplayFilter], Awaitable[ReplayReport]]


def replayer_for(
    publisher: Publisher, brokers: Sequence[str], *, topic: str, dlq_topic: str
) -> Replay:
    """The service's replay: letters of ``dlq_topic`` written back to ``topic``.

    With the embedded queue (``publisher`` is its :class:`MemoryBroker`) the letters
    are those it keeps; with Kafka they are read by :class:`KafkaLetters`. Either way
    they are written with ``publisher``, so the running pipeline picks them up.
    """

    async def replay(chosen: ReplayFilter) -> ReplayReport:
        if isinstance(publisher, MemoryBroker):
            kept = publisher.log(dlq_topic)
            letters = MemoryLetters(dlq_topic, publisher.start_offset(dlq_topic), kept)
            return await replay_letters(letters, publisher, topic, chosen)
        async with open_kafka_letters(brokers, dlq_topic, chosen.since_ms) as kafka:
            return await replay_letters(kafka, publisher, topic, chosen)

    return replay
