"""What a family of tools shares: periodic and interval summaries, top-style tables, tcp, irqs, stack profilers and their Python stacks, top."""
