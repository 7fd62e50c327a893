"""The pipeline: every record in, exactly one outcome out.

``workers`` (the worker loop: decode, dedup, limit, deliver, settle), ``policy``
(retry tier, park or defer: what happens to a notification that cannot go out
now), ``attempt`` (one provider call for a batch), ``breaker`` (one circuit
breaker per provider), ``backend_calls`` (calls retried until they pass) and
``replay`` (dead letters written back).
"""
