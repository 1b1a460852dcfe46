"""Latency profiling (device side, no torch): profiler, statistics, reports, per-op breakdowns; `edgecnn benchmark` (host)."""
