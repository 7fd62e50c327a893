"""Everything pushtrio does with kafka-python, in one place.

The pieces every Kafka client needs:

- ``reader``: the one OS thread that owns the KafkaConsumer (poll, pause/resume,
  ordered commits), with ``status`` (what ``/health`` shows of it) and ``polled``
  (kafka-python's records as pushtrio's :class:`~pushtrio.contract.records.Record`).
- ``publisher``: records written (``POST /send``, dead letters, delay topics).
- ``letters``: the dead-letter topic read without a group, for replays.
- ``clients``: how every client is configured, and why; ``topics``: the delay topics
  created next to the main one; ``errors``: kafka-python's errors made readable.

The work-arounds owed to kafka-python's behaviour, each measured on kafka-python
3.0.12 (the version ``pyproject.toml`` pins to 3.0.x) against Apache Kafka 4.1:

- ``fetcher_fix``: a resumed partition whose fetched data was parked while paused
  is never fetched again (an empty ``PartitionRecords`` blocks the restore).
- ``transport_fix``: a read woken on a socket the same loop turn closed logs an
  error traceback; it now ends quietly with the connection error.
- ``errors`` (``release_undecodable``): a record batch kafka-python cannot decode
  raises on every poll forever; the reader skips past it and reports the partition.
- ``membership``: a member kafka-python holds out of the group (a join that never
  completes, partitions added that the group does not notice, a deleted topic it
  spins on) is made to leave and join again.
- ``assignor``: the cooperative-sticky assignor balances partitions in total, so
  with the delay topics subscribed one member could get the whole main topic;
  this one balances each topic on its own.
- ``rebalance``: the listener runs on kafka-python's I/O thread while the reader
  waits in ``poll``; it commits what is settled on revoke and hands the new
  assignment to the reader.
- ``monitor``: the consumer's own view of lag covers only its assigned, unstuck
  partitions; an admin client asks the brokers for the whole group's.
- ``lanes``: kafka-python returns what it fetched in its own order, so an urgent
  record would wait behind the main topic's buffered backlog; the main topic is
  paused while the urgent one has records not polled yet.
- ``held``: kafka-python cannot delay a record; delay-topic records read before
  they are due wait here with their partition paused.

Each module's docstring says more of why it exists.
"""
