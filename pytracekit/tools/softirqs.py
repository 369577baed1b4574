"""softirqs: time spent in soft interrupts per vector (BCC's options and
layout), from irq:softirq_entry/exit. Shared with hardirqs: pytracekit/families/irqs.py."""
from ..families.irqs import SOFTIRQS, make_command
from ..families.irqs import start as _start

DRY_RUN_ARGS: list[str] = []
command = make_command(SOFTIRQS)


def start(**options):
    return _start(SOFTIRQS, **options)
