"""What the tools pairing scheduler events share: the intervals their BPF
could not measure (bpf/ptk_sched.h counts them in `ptk_sched_unseen`: a start
or end no tracepoint reported, as while a VM agent's threads run). Reported
at the end of a run as a warning, and as "unseen" in the JSON loss line."""
from __future__ import annotations

import sys
from typing import Any

from ..model import LossReport
from ..render.output import Output

UNSEEN_MAP = "ptk_sched_unseen"


def unseen(prog: Any) -> int:
    """The intervals the program counted as unseen, summed over CPUs."""
    try:
        table = prog.bpf[UNSEEN_MAP]
    except KeyError:
        return 0
    return sum(table[table.Key(0)])


def unseen_line(count: int, what: str) -> str:
    return (f"WARNING: {count} {what} not measured: no tracepoint reported their "
            "start or end (none fires while some tasks run, such as a VM's agent)")


def warn_unseen(count: int, what: str) -> None:
    """The warning on stderr, in every output form, when there were any."""
    if count:
        print(unseen_line(count, what), file=sys.stderr, flush=True)


def report_loss(out: Output, prog: Any, loss: LossReport, what: str, **fields: Any) -> None:
    """out.loss with the unseen count beside it (JSON "unseen"), then the
    warning."""
    count = unseen(prog)
    out.loss(loss, unseen=count, **fields)
    warn_unseen(count, what)
