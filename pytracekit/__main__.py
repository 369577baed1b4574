"""`python -m pytracekit` and the `pytracekit` command.

Ctrl-C, SIGTERM or SIGHUP while the imports still run (the first fraction of
a second) end the run quietly with 128+signal, as they do until tracing
begins: nothing is attached and no command started yet. cli.main then
installs the handlers that unwind the tool (runner.install_signal_handlers)."""
import signal
import sys


def _interrupted(signum: int, _frame: object) -> None:
    sys.exit(128 + signum)


def run() -> None:
    from .engine import startup
    startup.mark("interpreter started")
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) is not signal.SIG_IGN:
            signal.signal(sig, _interrupted)
    from .cli.command import run as run_cli
    startup.mark("command line module imported (click)")
    run_cli()


if __name__ == "__main__":
    run()
