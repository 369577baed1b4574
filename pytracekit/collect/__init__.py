"""Getting results out of the kernel: ring buffers (stream), result maps drained per interval, stack maps into profiles, user stacks, sample logs, recordings."""
