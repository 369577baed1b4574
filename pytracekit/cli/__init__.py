"""The command line: the `pytracekit` command group (command), the options every tool shares (options) and a stdout that fails in one line (stdout)."""
