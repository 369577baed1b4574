"""The end of every run: what was lost, as a JSON line and/or a stderr warning."""
from __future__ import annotations

import click

from ..model import LossReport
from .jsonl import dumps, loss_obj
from .text import loss_line


def print_loss(loss: LossReport, as_json: bool) -> None:
    if as_json:
        click.echo(dumps(loss_obj(loss)))
    warning = loss_line(loss)
    if warning:
        click.echo(warning, err=True)
