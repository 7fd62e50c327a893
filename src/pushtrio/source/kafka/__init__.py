"""Everything pushtrio does with kafka-python, in one place.

``reader`` (the consumer thread, with ``status``: what /health shows of it, and
``polled``: its records converted), ``publisher`` (records written), ``letters``
(the dead-letter reader), ``clients`` and ``topics`` (how clients and topics are
made), ``errors`` (kafka-python's errors made readable) and the work-arounds owed
to kafka-python 3.0's behaviour: ``fetcher_fix``, ``membership``, ``monitor``,
``assignor``, ``rebalance`` and ``held``; each module's docstring says why it exists.
"""
