"""Faults injected into a ``pushtrio serve`` child process (put this folder on PYTHONPATH).

- ``PUSHTRIO_FAULT_NO_CODEC=lz4`` (or ``snappy``, ``zstd``): the codec library cannot
  be imported, so kafka-python cannot decode such batches, as on a machine without it.
- ``PUSHTRIO_FAULT_HANG_POLL=<path>``: once ``<path>`` exists, ``KafkaConsumer.poll``
  never returns (and ``<path>.hung`` is written): a reader thread stuck inside the client.
"""

import os
import sys
import threading

_MODULES = {"lz4": ("lz4", "lz4.frame"), "snappy": ("snappy",), "zstd": ("zstandard",)}

for _codec in filter(None, os.environ.get("PUSHTRIO_FAULT_NO_CODEC", "").split(",")):
    for _module in _MODULES[_codec]:
        sys.modules[_module] = None  # type: ignore[assignment]

_hang_flag = os.environ.get("PUSHTRIO_FAULT_HANG_POLL", "")
if _hang_flag:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from kafka.consumer.group import KafkaConsumer

    _poll = KafkaConsumer.poll
    _forever = threading.Event()

    def _poll_or_hang(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        if os.path.exists(_hang_flag):
            with open(_hang_flag + ".hung", "w"):
                pass
            _forever.wait()
        return _poll(self, *args, **kwargs)

    KafkaConsumer.poll = _poll_or_hang
