"""Rendering: results (pytracekit.model) as text, JSON lines, folded stacks, flame graphs, pprof, speedscope, reports and the loss line."""
