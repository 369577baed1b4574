"""faults: page faults by stack (user and kernel), from the page-faults
software perf event sampled on every fault. Text like BCC's stackcount,
or --folded for flame graphs. User stacks as stackcount takes them: unwound
in the kernel from CFI (--unwind dwarf, ustacks.py), else frame-pointer
walks stored by build id (buildid.BuildIdSymbolizer); both named also after
the process has exited."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import click

from ..cli import options
from ..errors import UsageError
from ..kernel.perf import PERF_TYPE_SOFTWARE, SW_EVENTS
from ..symbolize.buildid import BuildIdSymbolizer
from ..engine.loader import Program
from ..collect.mapdrain import drained
from ..model import Frame, LossReport, Sample, StackProfile
from ..families.periodic import BpfTool, attached, command_only, run_periodic
from ..engine.runner import Target, check_runnable
from ..collect.stack_maps import DELIMITER, stack_path
from ..symbolize.symbols import Symbolizer
from ..collect import user_stacks as ustacks
from ..collect.user_stacks import EventUnwinding, UnwindingToolMixin

DRY_RUN_ARGS: list[str] = []


@dataclass
class Faults(UnwindingToolMixin, BpfTool):
    user_symbols: BuildIdSymbolizer = None
    user: bool = True
    kernel: bool = True
    target_pid: int = 0
    unwinding: EventUnwinding | None = None   # --unwind dwarf
    _next_refresh: float = 0.0

    def warm(self) -> None:
        """Note the files of processes with stacks here while they live (five
        times a second): their build ids name the frames after they exit."""
        now = time.monotonic()
        if not self.user or now < self._next_refresh:
            return
        self._next_refresh = now + 0.2
        pids = {key.pid for key in self.prog["counts"].keys()} | {self.target_pid}
        self.user_symbols.remember(pids)

    def read(self) -> StackProfile:
        self.symbolizer.unknown_frames = self.user_symbols.unknown_frames = 0
        samples = [self._sample(k, v.value) for k, v in self.prog["counts"].items()]
        return StackProfile(samples, value_type="page_faults", loss=self.loss())

    def _sample(self, key: Any, value: int) -> Sample:
        """Root first: comm, user frames, [--], kernel frames."""
        comm = key.comm.decode(errors="replace")
        ustack = (self.user_symbols.user_stack(self.prog["user_stacks"], key.user_stack_id,
                                               key.user_stack_hash, key.pid)
                  if self.user else [])
        kstack = stack_path(self.symbolizer, self.prog["stack_traces"], pid=key.pid,
                            user_stack_id=-1, kernel_stack_id=key.kernel_stack_id,
                            kernel_stack_hash=key.kernel_stack_hash, user=False,
                            kernel=self.kernel)
        path = [Frame(comm, "process"), *reversed(ustack)]
        if ustack and kstack:
            path.append(DELIMITER)
        return Sample(tuple(path + kstack), value, pid=key.pid, tid=key.tid, comm=comm)

    def loss(self) -> LossReport:
        loss = super().loss()
        loss.unknown_frames += self.user_symbols.unknown_frames
        return loss

    def clear(self) -> None:
        """After an interval's report (stack ids stay valid for the next one)."""
        self.prog["counts"].clear()


def start(*, pid: int = 0, user: bool = True, kernel: bool = True,
          binaries: tuple[str, ...] = (), command: tuple[str, ...] = (),
          unwind: str = "dwarf", **_: Any) -> Faults:
    """`binaries`: files whose frames to name even if no process mapping them
    is seen alive (a command that exits within a moment); `command`: the held
    command whose pid is `pid`."""
    prog = Program.from_file("faults", defines={
        "FILTER_PID": pid or 0, "USER_STACKS": user, "KERNEL_STACKS": kernel,
        # kernel stacks by a hash of their frames (ptk_kstack.h): no bucket collisions
        "KSTACK_HASH": kernel, "KSTACKS_SIZE": 16384 if kernel else 1,
        **ustacks.defines(unwind, user=user, storage=16384,
                          command_pid=pid if command else 0)})
    user_symbols = BuildIdSymbolizer()
    user_symbols.add_files(binaries)
    try:
        unwinding = EventUnwinding.setup(prog, user_symbols.symbolizer, pids=[pid],
                                         command=command, command_pid=pid)
        prog.attach_perf_event(PERF_TYPE_SOFTWARE, SW_EVENTS["page-faults"], "on_fault",
                               sample_period=1, label="page-faults")
    except BaseException:
        prog.close()
        raise
    symbolizer = Symbolizer(prog.bpf)
    if kernel:
        symbolizer.kstacks = prog["kstacks"]
    return Faults(prog, symbolizer, user_symbols, user=user, kernel=kernel,
                  target_pid=pid or 0, unwinding=unwinding)


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
@ustacks.unwind_option()
@options.output_options("-f")
@options.standard
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def command(pid, user_only, kernel_only, duration, interval, unwind, out, command):
    """Count page faults by stack."""
    if user_only and kernel_only:
        raise UsageError("give only one of -U and -K")
    cmd = command_only(command, "faults")
    target = Target.from_options(pid, cmd)
    binaries = (check_runnable(cmd[0]),) if cmd else ()
    with attached(target,
                  lambda: start(pid=target.pid, user=not kernel_only, kernel=not user_only,
                                binaries=binaries, command=cmd, unwind=unwind),
                  "Counting page faults by stack... Hit Ctrl-C to end.") as tool:
        last = []

        def report(final: bool) -> None:
            """Each interval prints the faults since the last one (BCC stackcount -i)."""
            with drained(tool.prog, [] if final else ["counts"]):
                profile = tool.read()
            last[:] = [profile]
            # a folded interval without faults is no line; the end is one, even empty
            out.stacks(profile, text=stackcount_text,
                       folded=lambda p: folded(p) if p.samples or final else None)
        run_periodic(target, duration=duration, interval=interval, count=None, report=report,
                     poll=tool.poll)
        out.loss(last[0].loss)
