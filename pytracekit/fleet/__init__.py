"""Feeding the systems a fleet already runs: Prometheus metrics from running
tools (`export`) and pprof profiles on a schedule (`cprofile`)."""
