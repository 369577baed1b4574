"""`python -m pytracekit`.

Ctrl-C, SIGTERM or SIGHUP while the imports still run (the first fraction of
a second) end the run quietly, as they do later: nothing is attached yet."""
import signal
import sys


def _interrupted(signum: int, _frame: object) -> None:
    sys.exit(128 + signum)


for _sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    if signal.getsignal(_sig) is not signal.SIG_IGN:
        signal.signal(_sig, _interrupted)

from .cli import run  # noqa: E402  (after the handlers)

run()
