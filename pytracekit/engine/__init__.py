"""The engine: compiling, caching and loading BPF programs, attaching them, a run's target and lifetime (runner, follow) and its settings."""
