"""The shared state: Redis (or the embedded twins) behind small interfaces.

``redis_client`` (the one way trio code calls Redis), ``limiter`` (per-user
sliding window), ``dedup`` and ``dedup_layout`` (delivered ids), ``devices`` (the
device registry).
"""
