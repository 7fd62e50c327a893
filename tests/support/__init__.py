"""One kit for the tests and the benchmarks (``python -m benchmarks`` imports it too).

Import from the module that holds what you need; this package imports nothing, so
that loading one helper never drags in kafka-python or pytest:

- :mod:`.waiting`: ``wait_for`` (blocking) and ``wait_until`` (trio) poll a
  condition until a deadline.
- :mod:`.process`: ``ServeProcess``, ``pushtrio serve`` as a child process on
  PORT=0, its address read from the "ready on" line it logs.
- :mod:`.kafka`: the one Kafka producer builder and the blocking Kafka helpers
  (produce, end and committed offsets, group members, read back).
- :mod:`.files`: outcome logs and other files a child process writes.
- :mod:`.ports`: a port where nothing listens, and ``free_port`` for the servers
  that must keep one port across restarts (a private Redis or Kafka).
- :mod:`.requirements`: skip, or fail under PUSHTRIO_REQUIRE_SERVICES, when a
  tool the test needs is missing.
"""
