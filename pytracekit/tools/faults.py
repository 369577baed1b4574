"""faults: page faults by stack (user and kernel), from the page-faults
software perf event sampled on every fault. Text like BCC's stackcount,
or --folded for flame graphs."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import click

from .. import options
from ..errors import UsageError
from ..kernel.perf import PERF_TYPE_SOFTWARE, SW_EVENTS
from ..loader import Program
from ..model import StackProfile
from ..periodic import BpfTool, attached, command_only, finish_loss, run_periodic
from ..render import jsonl
from ..runner import Target
from ..stacks import read_profile
from ..symbols import Symbolizer

DRY_RUN_ARGS: list[str] = []


@dataclass
class Faults(BpfTool):
    user: bool = True
    kernel: bool = True

    def warm(self) -> None:
        """Symbolize user stacks now, while their processes still exist."""
        if not self.user:
            return
        for key, _ in self.prog["counts"].items():
            self.symbolizer.stack(self.prog["stack_traces"], key.user_stack_id, pid=key.pid)

    def read(self) -> StackProfile:
        self.symbolizer.unknown_frames = 0
        profile = read_profile(self.prog["counts"], self.prog["stack_traces"], self.symbolizer,
                               self.prog.loss(), user=self.user, kernel=self.kernel,
                               delimit=True)
        profile.value_type = "page_faults"
        return profile

    def clear(self) -> None:
        """After an interval's report (stack ids stay valid for the next one)."""
        self.prog["counts"].clear()



def start(*, pid: int = 0, user: bool = True, kernel: bool = True, **_: Any) -> Faults:
    prog = Program.from_file("faults", defines={"FILTER_PID": pid or 0, "USER_STACKS": user,
                                                "KERNEL_STACKS": kernel})
    prog.attach_perf_event(PERF_TYPE_SOFTWARE, SW_EVENTS["page-faults"], "on_fault",
                           sample_period=1, label="page-faults")
    return Faults(prog, Symbolizer(prog.bpf), user=user, kernel=kernel)


def folded(profile: StackProfile) -> str:
    lines = [";".join(f.name for f in s.stack) + f" {s.value}" for s in profile.merged().samples]
    return "\n".join(sorted(lines))


def stackcount_text(profile: StackProfile) -> str:
    """Leaf first, then the process, then the count; largest count last (BCC)."""
    out = []
    for s in sorted(profile.samples, key=lambda s: s.value):
        frames = [f for f in s.stack if f.kind != "process"]
        out += [f"  {f.name}" for f in reversed(frames)]
        out.append(f"    {s.comm} [{s.pid}]")
        out.append(f"    {s.value}\n")
    return "\n".join(out)


@click.command("faults", context_settings={**options.TOOL_CONTEXT,
                                           "ignore_unknown_options": True})
@options.pid_option("-p")
@click.option("-U", "--user-stacks-only", "user_only", is_flag=True, help="User stacks only.")
@click.option("-K", "--kernel-stacks-only", "kernel_only", is_flag=True,
              help="Kernel stacks only.")
@options.duration_option("-d")
@options.interval_option("-i")
@click.option("-f", "--folded", "folded_out", is_flag=True,
              help="Print folded stacks (flamegraph.pl input).")
@options.json_option()
@options.standard
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def command(pid, user_only, kernel_only, duration, interval, folded_out, as_json, command):
    """Count page faults by stack."""
    if user_only and kernel_only:
        raise UsageError("give only one of -U and -K")
    cmd = command_only(command, "faults")
    target = Target.from_options(pid, cmd)
    with attached(target,
                  lambda: start(pid=target.pid, user=not kernel_only, kernel=not user_only),
                  "Counting page faults by stack... Hit Ctrl-C to end.") as tool:
        last = []

        def report(final: bool) -> None:
            """Each interval prints the faults since the last one (BCC stackcount -i)."""
            profile = tool.read()
            last[:] = [profile]
            if as_json:
                for obj in jsonl.stacks_objs(profile):
                    click.echo(jsonl.dumps(obj))
            elif folded_out:
                if profile.samples or final:
                    click.echo(folded(profile))
            else:
                click.echo(stackcount_text(profile))
            if not final:
                tool.clear()
        run_periodic(target, duration=duration, interval=interval, count=None, report=report,
                     poll=tool.poll)
        finish_loss(last[0].loss, as_json)
