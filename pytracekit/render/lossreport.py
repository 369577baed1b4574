"""The end of every run: what was lost, as a JSON line and/or a stderr warning.
The one printer is `Output.loss` (render/output.py); this is its name for
callers holding a loss and the run's output."""
from __future__ import annotations

from ..model import LossReport
from . import output


def print_loss(loss: LossReport, out: "output.Output | bool | None" = None, *,
               as_json: bool = False) -> None:
    """`as_json` (or a bool for `out`): only from tools not converted yet."""
    output.of(out, as_json).loss(loss)
