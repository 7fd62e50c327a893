"""Where settled outcomes go: ``metrics`` (counters and latency), ``events`` (the
live feed's hub) and ``outcome_log`` (the log and the OUTCOME_LOG file)."""
