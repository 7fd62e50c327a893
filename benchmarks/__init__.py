"""pushtrio's benchmark harness: ``python -m benchmarks``.

Measures, in one run against the real Kafka and Redis of ``scripts/services.sh``:

    ceiling.py    a bare kafka-python consumer reading + decoding N records
    pipeline.py   ``pushtrio serve`` throughput on the same records, and on a realistic mix
    latency.py    record CreateTime -> outcome at fixed offered rates
    memory.py     resident set size of the service process (peak and steady)

``__main__`` runs the phases in order; ``report`` prints the table and writes JSON and
the figures section of BENCHMARKS.md. Every phase uses a fresh topic and consumer
group and its own Redis database flush; every child process is stopped on the way out.
"""
