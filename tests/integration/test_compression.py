"""Compressed records reach the providers like plain ones.

kafka-python decodes gzip by itself but needs python-snappy, lz4 and zstandard for
the other codecs; without them the first such batch stalls the consumer. Records
are written with each codec by kafka-python and by Apache Kafka's own Java client.
"""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import kafka.codec
import pytest
from kafka.record.default_records import DefaultRecordBatch

from ..support.files import read_jsonl
from ..support.kafka import notification, produce, read_all, wait_committed
from ..support.process import ServeProcess, serve_env
from .java_producer import JavaProducer

pytestmark = pytest.mark.integration

CODECS = ["gzip", "snappy", "lz4", "zstd"]
CODEC_IDS = {
    DefaultRecordBatch.CODEC_GZIP: "gzip",
    DefaultRecordBatch.CODEC_SNAPPY: "snappy",
    DefaultRecordBatch.CODEC_LZ4: "lz4",
    DefaultRecordBatch.CODEC_ZSTD: "zstd",
}
PER_BATCH = 50
TIMEOUT_S = 30.0


@pytest.fixture(scope="session")
def java_producer(tmp_path_factory: pytest.TempPathFactory) -> JavaProducer:
    """Compiled at its first use, so a run without Kafka (tests skipped) never calls javac."""
    return JavaProducer(tmp_path_factory.mktemp("java-producer"))


def producers_per_codec(
    bootstrap: str, topic: str, expected: int, monkeypatch: pytest.MonkeyPatch
) -> Counter[str]:
    """How many producers wrote ``topic``'s compressed record batches with each codec.

    Both clients are idempotent by default, so each producer has an id of its own.
    """
    seen: set[tuple[int, int]] = set()
    uncompress = DefaultRecordBatch._maybe_uncompress

    def spy(batch: DefaultRecordBatch) -> None:
        seen.add((batch.producer_id, batch.compression_type))
        uncompress(batch)

    with monkeypatch.context() as patch:
        patch.setattr(DefaultRecordBatch, "_maybe_uncompress", spy)
        assert len(read_all(bootstrap, topic, expected, timeout_s=TIMEOUT_S)) == expected
    # kafka-python sends a batch uncompressed when compressing does not shrink it (a
    # batch of one small record, split off by timing): such batches say nothing here.
    return Counter(CODEC_IDS.get(code, f"codec {code}") for _, code in seen if code != 0)


@pytest.mark.parametrize("codec", CODECS)
def test_kafka_python_has_the_codec(codec: str) -> None:
    """The package's dependencies bring kafka-python's optional codec libraries."""
    assert getattr(kafka.codec, f"has_{codec}")(), f"kafka-python cannot {codec}: library missing"
    payload = notification("round-trip", "alice")[1] * 50
    encoded = getattr(kafka.codec, f"{codec}_encode")(payload)
    assert len(encoded) < len(payload)
    assert getattr(kafka.codec, f"{codec}_decode")(encoded) == payload


def test_records_of_every_codec_and_client_are_delivered(
    kafka_bootstrap: str,
    redis_addr: str,
    new_topic: Callable[..., str],
    java_producer: JavaProducer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One topic holds batches of all four codecs from both clients; one serve drains it.

    (One topic and one ``pushtrio serve`` for everything keeps this test to seconds.)
    """
    topic = new_topic(3, prefix="codecs")
    ids = {
        (client, codec): [f"{client}-{codec}-{i}" for i in range(PER_BATCH)]
        for client in ("python", "java")
        for codec in CODECS
    }

    def records(client: str, codec: str) -> Iterator[tuple[bytes, bytes]]:
        for i, message_id in enumerate(ids[client, codec]):
            yield notification(message_id, f"user-{i % 10}")

    for codec in CODECS:
        produce(kafka_bootstrap, topic, records("python", codec), compression_type=codec)
    java_producer.produce(
        kafka_bootstrap,
        topic,
        ((codec, *record) for codec in CODECS for record in records("java", codec)),
        timeout_s=TIMEOUT_S,
    )

    env = serve_env(kafka_bootstrap, redis_addr, topic, tmp_path, "run")
    outcomes = Path(env["OUTCOME_LOG"])
    log = tmp_path / "serve.log"
    with ServeProcess(env, log) as process:
        process.wait_ready(TIMEOUT_S)
        try:
            wait_committed(kafka_bootstrap, env["CONSUMER_GROUP"], topic, TIMEOUT_S)
        except AssertionError as exc:
            seen = {e["id"] for e in read_jsonl(outcomes)}
            missing = {f"{c}/{z}": sum(i not in seen for i in v) for (c, z), v in ids.items()}
            raise AssertionError(
                f"{exc}\nids without an outcome, by client/codec: {missing}\n"
                f"serve log:\n{log.read_text()[-3000:]}"
            ) from None
        process.signal(signal.SIGTERM)
        assert process.wait(TIMEOUT_S) == 0

    events = read_jsonl(outcomes)
    assert Counter(e["id"] for e in events) == Counter(i for v in ids.values() for i in v)
    assert {e["event"] for e in events} == {"delivered"}
    # The batches really are compressed: each codec by one kafka-python and one Java producer.
    expected = len(ids) * PER_BATCH
    assert producers_per_codec(kafka_bootstrap, topic, expected, monkeypatch) == dict.fromkeys(
        CODECS, 2
    )
