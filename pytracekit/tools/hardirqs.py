"""hardirqs: time spent in hard interrupt handlers (BCC's options and layout),
from irq:irq_handler_entry/exit. The implementation is shared with softirqs
in pytracekit/families/irqs.py."""
from ..families.irqs import HARDIRQS, make_command
from ..families.irqs import start as _start

DRY_RUN_ARGS: list[str] = []
command = make_command(HARDIRQS)


def start(**options):
    return _start(HARDIRQS, **options)
