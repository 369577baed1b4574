"""Symbolization: addresses to names (ELF symbols, build ids, data symbols), source lines, user-stack unwinding (CFI) and Python frames."""
