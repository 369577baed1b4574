"""list: what can be traced here, like `perf list`.

Tracepoints (with their fields under -v), software, hardware and cache events
each marked supported or not on this machine (proven by opening a counter),
kernel functions where they can be probed, and with -x BINARY / -p PID a
program's functions and USDT probes. Reads tracefs and ELF files; loads no BPF
(see bpf/list.bpf.c for what --dry-run does).
"""
from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass, field

import click

from ..cli import options
from ..engine import settings
from ..errors import NotFoundError, NotSupportedError, PrivilegeError, UsageError
from ..kernel import features, tracefs
from ..probes.perf_events import CATALOGUE, supported
from ..engine.runner import check_pid
from ..textsafe import printable

DRY_RUN_ARGS: list[str] = []
SECTIONS = {"sw": "software", "software": "software", "hw": "hardware",
            "hardware": "hardware", "cache": "cache", "tracepoint": "tracepoint",
            "kernel": "function"}
LABELS = {"software": "Software event", "hardware": "Hardware event",
          "cache": "Hardware cache event", "tracepoint": "Tracepoint event",
          "function": "Kernel function", "usdt": "USDT probe", "ufunc": "Function"}


@dataclass
class Entry:
    name: str
    kind: str
    supported: bool = True
    note: str = ""
    fields: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        # `list -x BINARY` prints names from any file: see textsafe
        self.name, self.note = printable(self.name), printable(self.note)

    def as_json(self) -> dict:
        obj = {"type": "event", "name": self.name, "kind": self.kind,
               "supported": self.supported, "note": self.note}
        if self.fields:
            obj["fields"] = self.fields
        return obj


def _matches(name: str, pattern: str | None) -> bool:
    return pattern is None or fnmatch.fnmatchcase(name, pattern) or \
        ("*" not in pattern and "?" not in pattern and pattern in name)


def perf_events(pattern: str | None, kinds: set[str]) -> list[Entry]:
    out = []
    for kind, table in CATALOGUE.items():
        if kind not in kinds:
            continue
        for name, (config, description) in table.items():
            if not _matches(name, pattern):
                continue
            ok, why = supported(kind, config)
            note = description if ok else f"not supported here: perf_event_open fails: {why}"
            out.append(Entry(name, kind, ok, note))
    return out


def tracepoints(pattern: str | None, verbose: bool) -> list[Entry]:
    try:
        names = tracefs.list_tracepoints()
    except (PermissionError, PrivilegeError):
        raise PrivilegeError("reading tracepoints needs root: run with sudo "
                             "(`list -x BINARY` works without)") from None
    out = []
    for name in names:
        if not _matches(name, pattern):
            continue
        entry = Entry(name, "tracepoint")
        if verbose:
            tp = tracefs.tracepoint(*name.split(":", 1))
            entry.fields = [f.decl for f in tp.fields]
        out.append(entry)
    return out


def kernel_functions(pattern: str | None) -> tuple[list[Entry], str]:
    """Probeable kernel functions, or why there are none (one line)."""
    from ..probes import specs as probes
    try:
        mechanism = probes.kernel_mechanism()
    except NotSupportedError:
        kprobes_why = features.kprobes_available()[1]
        fentry_why = features.fentry_available()[1]
        return [], (f"Kernel functions cannot be probed on this kernel: no kprobes ({kprobes_why}) "
                    f"and no fentry ({fentry_why}); trace the tracepoints above instead")
    if mechanism == "kprobe":
        names, how = probes.kernel_functions(), "kprobes"
    else:
        names, how = probes.fentry_functions(), "fentry (this kernel has no kprobes)"
    if pattern is None:
        return [], (f"{len(names)} kernel functions can be probed with {how}: "
                    "`pytracekit list 'vfs_*'` shows those matching a glob")
    return [Entry(n, "function") for n in names if _matches(n, pattern)], ""


def program_entries(binary: str | None, pid: int | None, pattern: str | None,
                    notes: list[str]) -> list[Entry]:
    from ..symbolize import elf
    from ..probes.specs import UsdtPathError
    if pid:
        check_pid(pid)
        try:
            binary = os.readlink(f"/proc/{pid}/exe")
        except OSError as exc:
            raise NotFoundError(f"cannot read /proc/{pid}/exe: {exc.strerror}") from None
    assert binary is not None
    path = _resolve(binary)
    out = [Entry(s.name, "ufunc", note=f"{path} 0x{s.address:x} size {s.size}")
           for s in elf.functions(path) if _matches(s.name, pattern)]
    try:
        probes = usdt_probes(path, pid)
    except UsdtPathError as exc:
        probes = []
        notes.append(f"USDT probes not read: {exc.message}")
    except (PermissionError, PrivilegeError, NotSupportedError):
        probes = []
        notes.append("USDT probes not read: BCC needs root to read them (run with sudo)")
    for probe in probes:
        if _matches(probe.name, pattern):
            out.append(probe)
    return out


def _resolve(binary: str) -> str:
    if os.sep not in binary:
        import shutil
        found = shutil.which(binary)
        if not found:
            raise NotFoundError(f"no such binary: {binary} (not a path, not on PATH)")
        binary = found
    if not os.path.exists(binary):
        raise NotFoundError(f"no such binary: {binary}")
    return os.path.realpath(binary)


def usdt_probes(path: str, pid: int | None) -> list[Entry]:
    tracefs.tracefs_root()   # BCC reads the tracefs path when imported
    from ..probes.specs import UsdtPathError, enumerate_usdt
    try:
        probes = enumerate_usdt(None if pid else path, pid)
    except UsdtPathError:
        raise
    except Exception:   # BCC raises bare Exception for a binary without notes
        return []
    out = []
    for p in probes:
        name = f"{p.provider.decode()}:{p.name.decode()}"
        out.append(Entry(name, "usdt", note=f"{p.bin_path.decode()}, {p.num_arguments} "
                                            f"argument(s), {p.num_locations} location(s)"))
    return out


def render(entries: list[Entry], notes: list[str], verbose: bool) -> str:
    lines = []
    for e in entries:
        label = LABELS[e.kind]
        if not e.supported:
            label += ", not supported"
        lines.append(f"  {e.name:<50} [{label}]")
        if verbose and e.note and e.kind != "tracepoint":
            lines.append(f"       {e.note}")
        for decl in e.fields:
            lines.append(f"       {decl}")
    lines += ["", *notes] if notes else []
    return "\n".join(lines)


def source_lines(spec: str) -> tuple[str, list[dict]]:
    """-L BINARY:FUNCTION: the function's source lines, those with code
    (where a line probe can go) numbered relative to its first line."""
    from ..probes import lineprobes
    from ..probes.specs import find_binary
    binary, sep, name = spec.rpartition(":")
    if not sep or not binary or not name:
        raise UsageError(f"-L takes BINARY:FUNCTION, not '{spec}'")
    path = find_binary(binary)
    function, lines = lineprobes.function_listing(path, name)
    rows = [{"type": "line", "function": function.name, "file": function.decl_file,
             "line": line, "rel_line": line - function.decl_line, "probeable": address is not None,
             "address": address, "text": printable(text)} for line, address, text in lines]
    title = (f"{printable(function.name)} at {printable(function.decl_file)}:{function.decl_line} "
             f"in {printable(path)} (numbered lines can be probed as "
             f"{printable(binary)}:{printable(function.name)}:N)")
    return title, rows


def render_lines(title: str, rows: list[dict]) -> str:
    out = [title]
    for row in rows:
        rel = str(row["rel_line"]) if row["probeable"] else ""
        out.append(f"  {rel:>5}  {row['line']:>6}  {row['text']}".rstrip())
    return "\n".join(out)


def variables(spec: str) -> tuple[str, list[dict]]:
    """-V BINARY:FUNCTION:RELLINE or BINARY:FILE:LINE: the variables in
    scope there, with their types and whether they can be read."""
    from ..probes import lineprobes
    from ..probes.specs import parse_spec, resolve
    parsed = parse_spec(spec)
    if not parsed.is_line:
        raise UsageError(f"-V takes BINARY:FUNCTION:LINE or BINARY:FILE.c:LINE, not '{spec}'")
    rows, titles = [], []
    for probe in resolve(parsed):
        place = probe.place
        titles.append(f"{place.function.name}:{place.rel_line} ({place.label}, "
                      f"{printable(probe.binary)}+{place.address:#x})")
        for var in lineprobes.debug_info(probe.binary).variables_at(place.address):
            rows.append({"type": "variable", "name": printable(var.name),
                         "type_name": printable(var.type_name),
                         "kind": var.kind,
                         "readable": var.readable, "note": printable(var.problem()),
                         "at": place.label})
    return "Variables at " + ", ".join(titles), rows


def render_variables(title: str, rows: list[dict]) -> str:
    """Parameters and locals one a line; the file's globals (perf -V hides
    them) in one line, those that can be read."""
    scoped = [r for r in rows if r["kind"] != "global"]
    out = [title + ":"]
    width = max((len(r["type_name"]) for r in scoped), default=0)
    for row in scoped:
        note = " (parameter)" if row["kind"] == "parameter" else ""
        if not row["readable"]:
            note += f"  [{row['note']}]"
        out.append(f"  {row['type_name']:<{width}}  {row['name']}{note}")
    readable = sorted({r["name"] for r in rows if r["kind"] == "global" and r["readable"]})
    if readable:
        out.append("  globals of the file, readable by name too: " + ", ".join(readable))
    return "\n".join(out)


def _proof_of_attach() -> None:
    """--dry-run / --ebpf: load bpf/list.bpf.c on sched_switch (see its comment)."""
    from ..engine.loader import Program
    with Program.from_file("list") as prog:
        prog.attach_tracepoint("sched", "sched_switch", "on_tracepoint")
        prog.ready()


@click.command("list", context_settings=options.TOOL_CONTEXT)
@click.argument("pattern", required=False)
@click.option("-v", "--verbose-fields", "verbose", is_flag=True,
              help="Show each tracepoint's fields and each event's description.")
@click.option("-x", "--binary", default=None, help="List this program's functions and USDT probes.")
@click.option("-L", "--lines", "lines_of", metavar="BINARY:FUNCTION", default=None,
              help="Show a function's source lines, numbering those a line probe can go to.")
@click.option("-V", "--vars", "vars_at", metavar="BINARY:FUNCTION:LINE", default=None,
              help="Show the variables in scope at a source line (or BINARY:FILE.c:LINE).")
@options.pid_option("-p")
@options.output_options()
@options.standard
def command(pattern, verbose, binary, lines_of, vars_at, pid, out):
    """List events, tracepoints and probeable functions (globs: 'sched:*').

    PATTERN may also be a section: sw, hw, cache, tracepoint, kernel."""
    if settings.current().ebpf or settings.current().dry_run:
        _proof_of_attach()
    if binary and pid:
        raise UsageError("give either -x BINARY or -p PID, not both")
    if lines_of or vars_at:
        if sum(bool(x) for x in (lines_of, vars_at, binary, pid, pattern)) > 1:
            raise UsageError("-L and -V take their own BINARY:...: give one of them alone")
        title, rows = source_lines(lines_of) if lines_of else variables(vars_at)
        text = render_lines if lines_of else render_variables
        out.emit(text=lambda: text(title, rows), json=rows)
        return
    notes: list[str] = []
    if binary or pid:
        entries = program_entries(binary, pid, pattern, notes)
        if not entries:
            found = (f"nothing in {binary or pid} matches '{pattern}'" if pattern
                     else f"no functions or USDT probes in {binary or pid}")
            raise NotFoundError(found + "".join(f" ({note})" for note in notes))
    else:
        kinds = {SECTIONS[pattern]} if pattern in SECTIONS else set(SECTIONS.values())
        glob = None if pattern in SECTIONS else pattern
        entries = perf_events(glob, kinds)
        if "tracepoint" in kinds:
            entries += tracepoints(glob, verbose)
        if "function" in kinds:
            functions, note = kernel_functions(glob)
            entries += functions
            if note and (glob is None or ":" not in glob):
                notes.append(note)
        if not entries and glob:
            raise NotFoundError(f"no event matches '{glob}' (try `pytracekit list` without it)")
    out.emit(text=lambda: render(entries, notes, verbose),
             json=lambda: [e.as_json() for e in entries] +
             [{"type": "note", "text": note} for note in notes])
