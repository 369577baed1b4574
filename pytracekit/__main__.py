"""`python -m pytracekit` and the `pytracekit` command.

Ctrl-C, SIGTERM or SIGHUP while the imports still run (the first fraction of
a second) end the run quietly with 128+signal at once (os._exit), as they do
until tracing begins: nothing is attached and no command started yet. cli.main then
installs the handlers that unwind the tool (runner.install_signal_handlers).
Those quiet handlers go in first, before any import that takes time: through
_signal, built into the interpreter (signal imports enum, milliseconds on a
loaded machine, during which a Ctrl-C printed a traceback)."""
import _signal
import os
import sys


def _interrupted(signum: int, _frame: object) -> None:
    # os._exit, not sys.exit: nothing needs unwinding yet, and an exception
    # raised where Python ignores them (an import's weakref callback) was
    # dropped, so the run went on to its command's end (seen in the tests)
    os._exit(128 + signum)


def run() -> None:
    for sig in (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP):
        if _signal.getsignal(sig) != _signal.SIG_IGN:
            _signal.signal(sig, _interrupted)
    import gc
    # The imports make tens of thousands of objects that all live on: collecting
    # as they come (~35 times for stat) frees almost nothing; cli.command turns it on
    # again once the tool is imported, what exists by then frozen out of it.
    gc.disable()
    from .engine import startup
    startup.mark("interpreter started")
    from .engine import dccache
    # the dataclasses' methods, compiled by an earlier run of this command
    dccache.install(next((a for a in sys.argv[1:] if not a.startswith("-")), ""))
    from .cli.command import run as run_cli
    startup.mark("command line module imported (click)")
    run_cli()


if __name__ == "__main__":
    run()
