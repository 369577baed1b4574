"""What the stack tools (profile, offcputime, offwaketime, wakeuptime, record,
report, diff) share: id lists, `-- COMMAND` after a positional duration,
BCC-style stack text, and writing a profile in any output format."""
from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .. import outfile
from ..errors import UsageError
from ..model import Frame, LossReport, Sample, StackProfile
from ..render import jsonl, output
from ..render.output import Output
from ..collect.stack_maps import relabel
from ..engine.session import ProgramSession

if TYPE_CHECKING:
    from ..engine.runner import Target

FORMATS = ("folded", "flamegraph", "pprof", "speedscope", "json")


def id_list(text: "str | list[int] | None", what: str = "pid") -> list[int]:
    """BCC's comma-separated -p/-L lists: "123,456"."""
    if not text:
        return []
    if isinstance(text, list):   # already checked by options.ProcessIds
        return text
    try:
        ids = [int(part) for part in str(text).split(",") if part.strip()]
    except ValueError:
        raise UsageError(f"bad {what} list {text!r}: expected numbers separated by commas, "
                         "e.g. 123,456") from None
    if not ids or any(i <= 0 for i in ids):
        raise UsageError(f"bad {what} list {text!r}: {what}s are positive numbers")
    return ids


def pick_duration(positional: float | None, option: float | None) -> float | None:
    if positional is not None and option is not None and positional != option:
        raise UsageError("give the duration once: positional or --duration")
    return positional if positional is not None else option


# -- text ---------------------------------------------------------------------

def opening_line(verb: str, pids: list[int], tids: list[int], command: tuple[str, ...],
                 user_only: bool, kernel_only: bool, duration: float | None) -> str:
    """BCC's first line, e.g. "Sampling at 49 Hertz of all threads by user +
    kernel stack for 5 secs." (`verb` is "Sampling at 49 Hertz")."""
    who = ("PID " + ",".join(map(str, pids)) if pids else
           "TID " + ",".join(map(str, tids)) if tids else
           f"command {command[0]}" if command else "all threads")
    stack = "user" if user_only else "kernel" if kernel_only else "user + kernel"
    tail = f" for {duration:g} secs." if duration else "... Hit Ctrl-C to end."
    return f"{verb} of {who} by {stack} stack{tail}"


def bcc_stack_text(profile: StackProfile, *, top: int | None = None,
                   show_pid: bool = True) -> str:
    """BCC's multi-line stacks: leaf first, kernel frames above `--` above user
    frames, then `-  comm (pid)` and the value; smallest first so the biggest
    ends up next to the prompt, as BCC prints them."""
    ordered = sorted(profile.samples, key=lambda s: (s.value, s.comm))
    if top is not None:
        ordered = ordered[-top:] if top > 0 else []
    out = []
    for sample in ordered:
        frames = [f for f in sample.stack if f.kind != "process"]
        for frame in reversed(frames):
            out.append(f"    {frame.name}")
        who = f"{sample.comm} ({sample.pid})" if show_pid else sample.comm
        out.append(f"    {'-':<16} {who}")
        out.append(f"        {sample.value}\n")
    return "\n".join(out)


def bcc_folded(profile: StackProfile) -> str:
    """BCC's -f lines: the user/kernel delimiter is `-` there, `--` in text."""
    from ..render.folded import folded
    dash = Frame("-", "marker")
    return folded(relabel(profile, lambda f: dash if f.kind == "marker" and f.name == "--" else f))


# -- JSON and files -------------------------------------------------------------

def json_lines(tool: str, profile: StackProfile) -> list[str]:
    """A profile as --json prints it (the file form of --format json)."""
    objs = [jsonl.profile_obj(tool, profile)]
    objs += sorted(jsonl.stacks_objs(profile), key=lambda o: -o["value"])
    objs.append(jsonl.loss_obj(profile.loss))
    return [jsonl.dumps(o) for o in objs]


def _utf8(text: str) -> bytes:
    # A binary whose path is not UTF-8 names frames with lone surrogates: \udcff.
    return text.encode("utf-8", "backslashreplace")


def render(profile: StackProfile, fmt: str, *, tool: str, title: str = "") -> bytes:
    """A profile in one of FORMATS (renderers live in pytracekit.render)."""
    if fmt == "folded":
        return _utf8(bcc_folded(profile))
    if fmt == "flamegraph":
        from ..render.flamegraph import flamegraph_html
        return _utf8(flamegraph_html(profile, title=title or f"pytracekit {tool}",
                                     count_name=None))   # None: named from the unit
    if fmt == "pprof":
        from ..render.pprof import to_pprof
        return to_pprof(profile)
    if fmt == "speedscope":
        from ..render.speedscope import to_speedscope
        return _utf8(to_speedscope(profile))
    if fmt == "json":
        return _utf8("\n".join(json_lines(tool, profile)) + "\n")
    raise UsageError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")


def write_output(profile: StackProfile, path: str, fmt: str, *, tool: str,
                 title: str = "") -> None:
    data = render(profile, fmt, tool=tool, title=title)
    outfile.write_file(path, data)
    print(f"wrote {fmt} to {path} ({len(data)} bytes)", file=sys.stderr)


# Before tracing: a run whose results cannot be saved at the end is lost.
check_writable = outfile.check_writable


def format_for(path: str | None, fmt: str | None) -> str | None:
    """--format, or guessed from --output's suffix (.html .pb.gz .folded .json)."""
    if fmt or not path:
        return fmt
    suffixes = {".html": "flamegraph", ".svg": "flamegraph", ".gz": "pprof", ".pb": "pprof",
                ".pprof": "pprof", ".folded": "folded", ".txt": "folded",
                ".speedscope": "speedscope", ".json": "json", ".jsonl": "json"}
    guess = suffixes.get(Path(path).suffix)
    if guess is None:
        raise UsageError(f"cannot tell the format of {path}: add --format "
                         f"({', '.join(FORMATS)})")
    return guess


output_options = [
    click.option("--output", "output", metavar="FILE", default=None,
                 help="Also write the profile to FILE (format from --format or the suffix)."),
    click.option("--format", "fmt", type=click.Choice(FORMATS), default=None,
                 help="Format of --output."),
]


def with_output_options(f: Any) -> Any:
    for dec in reversed(output_options):
        f = dec(f)
    return f


def emit_loss(loss: LossReport) -> None:
    """The loss warning of a tool whose stdout is not the profile (report's
    tables, record's file): the output's loss record in the text form."""
    output.Output().loss(loss)


# -- running a stack tool -------------------------------------------------------

def select_targets(pids: list[int], tids: list[int],
                   command: tuple[str, ...]) -> tuple["Target", list[int], dict[str, Any]]:
    """Check -p/-t lists and `-- COMMAND`, start the held command; returns the
    target, the ids for the BPF `followed` map and ptk_follow.h's defines (a
    command's children are followed, as perf record does)."""
    from ..engine import follow
    from ..engine.runner import Target, check_pid
    if pids and tids:
        raise UsageError("give a pid list or a tid list, not both")
    if command and (pids or tids):
        raise UsageError("give either pids/tids or -- COMMAND, not both")
    for pid in pids + tids:
        check_pid(pid)
    target = Target.from_options(None, command)
    target.watch(pids or tids, threads=bool(tids))   # the run ends when the last exits
    if command:   # the BPF side follows it from its exec, then its children
        # (EXEC_PID: ptk_unwind.h stops it at its entry to load its mappings)
        return target, [], {"FOLLOW_MODE": follow.COMMAND, "FOLLOW_ROOT": target.pid,
                            "EXEC_PID": target.pid}
    selected = pids or tids
    mode = follow.TIDS if tids else (follow.PIDS if selected else follow.ALL)
    return target, selected, {"FOLLOW_MODE": mode}


def _load_selected_only(prog: Any, unwinder: Any) -> None:
    """With a pid selection, the unwinder loads only selected processes: a
    waker outside them (offwaketime, wakeuptime), often just whatever task a
    timer interrupt hit, keeps the frame-pointer walk; loading every task an
    interrupt happens to find running cost seconds of CPU mid-run."""
    from ..engine import follow
    if unwinder is None or prog.defines.get("FOLLOW_MODE") not in (follow.COMMAND, follow.PIDS):
        return
    table = prog["followed"]

    def wanted(pid: int) -> bool:
        try:
            table[table.Key(pid)]
        except KeyError:
            return False
        return True
    unwinder.wanted = wanted


def launch(name: str, defines: dict[str, Any], target: "Target", selected: list[int],
           attach: Any = None) -> tuple[Any, Any, Any]:
    """Compile bpf/<name>.bpf.c, fill `followed`, attach (tracepoints attach
    themselves), watch new pids; returns (program, symbolizer, poll). On any
    failure the program is closed and the held command stopped."""
    from ..engine.loader import Program
    from ..collect.stack_maps import BATCH_S, watch_new_pids
    from ..symbolize.symbols import Symbolizer
    symbolizer = Symbolizer()
    # The -p processes' file symbols are read while clang compiles (without
    # the GIL); from the program cache the load is ~30 ms of verifier, and a
    # thread reading symbols then only competes with it for the GIL and 2
    # CPUs: naming reads them when it needs them instead.
    warm: list[Any] = []
    try:
        try:
            prog = Program.from_file(name, defines=defines, while_compiling=lambda: warm.append(
                symbolizer.warm_up([] if target.pid else selected)))
        finally:
            for thread in warm:
                thread.join()
        try:
            table = prog["followed"]
            for ident in selected:
                table[table.Key(ident)] = table.Leaf(1)
            symbolizer.bpf = prog.bpf
            unwinder = _unwinder(prog, symbolizer, target, selected)   # before samples
            _load_selected_only(prog, unwinder)
            with contextlib.suppress(KeyError):   # kernel stacks by hash (KSTACK_HASH)
                symbolizer.kstacks = prog["kstacks"]
            if attach is not None:
                attach(prog)
            poll = watch_new_pids(prog, symbolizer, unwinder=unwinder,
                                  batch_s=0.0 if target.command else BATCH_S)
            prog.ready()
        except BaseException:
            prog.close()
            raise
    except BaseException:
        target.finish()
        raise
    if not target.command:   # a held command is not its program yet
        for ident in selected:
            symbolizer.remember(ident)
    return prog, symbolizer, poll


def _unwinder(prog: Any, symbolizer: Any, target: "Target", selected: list[int]) -> Any:
    """The in-kernel unwinder's user half, when the program has one
    (CFI_UNWIND; unwinder.setup_unwinder)."""
    from ..symbolize.unwinder import setup_unwinder
    return setup_unwinder(prog, symbolizer, command=target.command, command_pid=target.pid,
                          pids=selected if target.pid == 0 else [])


@dataclass
class StackSession(ProgramSession):
    """A running stack tool's session (engine.session): `read()` cumulative
    stacks any time, `close()` once (it ends the target too)."""

    prog: Any
    target: Any
    symbolizer: Any
    poll: Any
    read_options: dict[str, Any]
    meta: dict[str, str]
    value_type: str = "samples"
    unit: str = "count"
    period: int = 0
    divisor: int = 1          # kernel values / divisor = reported values (ns -> us)
    started: float = field(default_factory=time.monotonic)
    sample_log: Any = None    # a samplelog.SampleLog: each sample kept too (record)
    # a first_samples.FirstSamples: copies of samples taken before their
    # process was loaded, unwound in user space (profile)
    first_samples: Any = None

    def samples(self) -> StackProfile:
        from ..collect.stack_maps import read_profile
        profile = read_profile(self.prog["counts"], self.prog["stack_traces"], self.symbolizer,
                               self.loss(), **self.read_options)
        if self.first_samples is not None:
            profile.samples += self.first_samples.samples(profile.loss, **self.read_options)
        return profile

    def read(self) -> StackProfile:
        from ..collect.stack_maps import merge_by_name
        self.poll(0)   # snapshot pids announced since the last poll
        if self.sample_log is not None:
            self.sample_log.drain()
        try:
            leaves = self.prog["leaf_frames"]
        except KeyError:
            pass
        else:
            self.symbolizer.leaves = {k.value: v for k, v in leaves.items()}
        profile = self.samples()
        self.symbolizer.unknown_frames = 0
        if self.divisor != 1:
            profile.samples = [Sample(s.stack, s.value // self.divisor, s.pid, s.tid, s.comm)
                               for s in profile.samples]
        profile = merge_by_name(profile)
        profile.samples = [s for s in profile.samples if s.value > 0]
        profile.value_type, profile.unit, profile.period = self.value_type, self.unit, self.period
        profile.duration_ns = int((time.monotonic() - self.started) * 1e9)
        profile.meta = dict(self.meta)
        return profile

    def stop_sampling(self) -> None:
        """The end of a run: no sample is counted from here on (a timer tool's
        perf events are closed), so the last read() is one snapshot, its
        loss counters those of its samples, and samples are the duration's,
        not those taken while the profile is read and named."""
        self.prog.detach_perf_events()

    def close(self) -> None:
        unwinder = getattr(self.symbolizer, "unwinder", None)
        if unwinder is not None:
            unwinder.close()   # never leave a process of the command stopped
            from ..engine import settings
            if settings.current().verbose:
                print(unwinder.summary(), file=sys.stderr)
                if self.first_samples is not None:
                    print(self.first_samples.summary(), file=sys.stderr)
        self.prog.close()
        self.target.finish()


def print_profile(tool: str, profile: StackProfile, *, out: Output,
                  top: int | None = None, text: Any = None, **loss_fields: Any) -> None:
    """Stacks to the run's output in its form (`text(profile, top=)` for
    text, else BCC's), then the loss (with `loss_fields` in its JSON)."""
    out.stacks(profile, tool=tool, text=lambda p: (text or bcc_stack_text)(p, top=top),
               folded=lambda p: bcc_folded(p).splitlines())
    out.loss(profile.loss, **loss_fields)
