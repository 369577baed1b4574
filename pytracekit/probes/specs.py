"""Probe specs, BCC's syntax, shared by every tool that takes them.

    func, p::func, r::func          kernel function entry / return
    lib:func, p:lib:func, r:lib:func user function (lib: a library name such
    /path/to/binary:func             as `c`, resolved like the dynamic linker,
                                     or a path)
    p:lib:func+0x10                  an offset into a function (entry only)
    BINARY:FILE.c:LINE               a source line (DWARF's line table; also
    BINARY:FUNCTION:RELLINE          lines relative to the function's first, as
                                     perf probe's FUNC:RLN): a uprobe at its address
    t:category:event                 a tracepoint
    u:lib:probe, u:lib:provider:probe  a USDT probe
    `*`/`?` wildcards in names; `regex=True` (the tools' -r) takes the name
    as a regular expression instead.

`parse_spec` is pure (no root, no file access): it turns text into a
`ProbeSpec` or raises a one-line `SpecError`. `resolve` looks at the system
(ELF symbols, tracefs, USDT notes) and expands a spec into `ResolvedProbe`s,
each able to attach one BPF function to itself.

Kernel functions go through kprobes where the kernel has them, else through
BPF trampolines (fentry/fexit, BCC's KFUNC_PROBE). An fentry program is bound
to its function when it loads, by its name (`kfunc__vfs_read`): tools keep
writing `int count_3(void *ctx)`, and `program_defines` renames the function
for the compiler (`#define count_3 kfunc__vfs_read`), so one BPF function
serves one kernel function. Its arguments are `((u64 *)ctx)[i]` and an fexit's
return value follows the last of them (expr_c reads them so).
"""
from __future__ import annotations

import dataclasses
import fnmatch
import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Iterable

from ..errors import NotFoundError, NotSupportedError, SpecError, UsageError
from ..kernel.function_probes import kernel_probe_unsupported
from ..engine.runner import signals_held

KINDS = ("kprobe", "kretprobe", "uprobe", "uretprobe", "tracepoint", "usdt")
DEFAULT_LIMIT = 1000

# Symbol names as they appear in ELF tables: C identifiers plus the characters
# of versioned (malloc@@GLIBC_2.2.5), C++/compiler-made (foo.cold, $x) names.
_NAME = re.compile(r"[A-Za-z_.$][\w.$@]*")
_WILDCARD_NAME = re.compile(r"[A-Za-z_.$*?\[\]][\w.$@*?\[\]-]*")
_TRACE_NAME = re.compile(r"[A-Za-z_*?][\w*?]*")


def program_return(kind: str) -> str:
    """The C value a BPF function at a probe of `kind` returns. A tracepoint is
    shared: 0 there makes the kernel drop the event for every perf user of it,
    system-wide, so it gets PTK_TP_PASS (bpf/pytracekit.h). A kprobe or uprobe
    made through perf_event_open is our own event: 0 skips work nobody needs."""
    return "PTK_TP_PASS" if kind == "tracepoint" else "0"


@dataclass(frozen=True)
class ProbeSpec:
    """A probe as the user wrote it, checked for form but not for existence."""

    kind: str                 # one of KINDS
    library: str              # binary or library as written; "" for kernel/tracepoint
    function: str             # function, event or USDT probe name (may hold wildcards)
    category: str = ""        # tracepoint category
    offset: int = 0           # bytes into the function (uprobe/kprobe entry only)
    regex: bool = False       # `function` is a regular expression
    text: str = ""            # the spec as written
    line: int | None = None   # a source-line probe: the line (in source_file, or relative
    source_file: str = ""     # to `function`'s first line when source_file is "")

    @property
    def is_line(self) -> bool:
        return self.line is not None

    @property
    def is_pattern(self) -> bool:
        return self.regex or _has_wildcard(self.function) or _has_wildcard(self.category)

    @property
    def is_kernel(self) -> bool:
        return self.kind in ("kprobe", "kretprobe")

    @property
    def is_return(self) -> bool:
        return self.kind in ("kretprobe", "uretprobe")

    def returning(self) -> "ProbeSpec":
        """The return probe on the same function (funclatency pairs them)."""
        if self.is_line:
            raise line_has_no_return(self.text)
        kind = {"kprobe": "kretprobe", "uprobe": "uretprobe"}.get(self.kind, self.kind)
        return dataclasses.replace(self, kind=kind)


def line_has_no_return(text: str) -> SpecError:
    """A return probe replaces the return address on top of the stack, which is
    only that at a function's entry: at a source line it would overwrite data."""
    return SpecError(f"'{text}' is a source line: it has no return (tools that time "
                     "calls need a function; trace and argdist read the line's variables)")


def _has_wildcard(text: str) -> bool:
    return any(c in text for c in "*?[")


def _bad(text: str, part: str, why: str) -> SpecError:
    return SpecError(f"bad probe spec '{text}': {why}" + (f" (at '{part}')" if part else ""))


def parse_spec(text: str, *, regex: bool = False, default_kind: str = "p") -> ProbeSpec:
    """Parse one spec; `default_kind` ("p" or "r") applies when none is written."""
    if default_kind not in ("p", "r"):
        raise ValueError(f"default_kind must be 'p' or 'r', not {default_kind!r}")
    raw = text
    text = text.strip()
    if not text:
        raise SpecError("empty probe spec: give a function, lib:func, t:category:event or u:lib:probe")
    parts = text.split(":")
    line_spec = _line_spec(raw, parts, regex)
    if line_spec is not None:
        return line_spec
    if len(parts) == 1:
        letter, library, name = default_kind, "", parts[0]
    elif len(parts) == 2:
        if parts[0] in ("p", "r", "t", "u"):
            hint = {"p": "p::FUNC or p:LIB:FUNC", "r": "r::FUNC or r:LIB:FUNC",
                    "t": "t:CATEGORY:EVENT", "u": "u:LIB:PROBE"}[parts[0]]
            raise _bad(raw, parts[0] + ":", f"a '{parts[0]}:' probe needs another field: write {hint}")
        letter, library, name = default_kind, parts[0], parts[1]
        if not library:
            raise _bad(raw, ":" + name, "the library before ':' is empty (write p::FUNC for a kernel function)")
    elif len(parts) == 3 or (len(parts) == 4 and parts[0] == "u"):
        letter, library, name = parts[0], parts[1], ":".join(parts[2:])
    else:
        raise _bad(raw, text, "too many ':' fields (forms: FUNC, LIB:FUNC, p:LIB:FUNC, "
                              "t:CATEGORY:EVENT, u:LIB:PROBE)")
    if letter not in ("p", "r", "t", "u"):
        raise _bad(raw, letter + ":", f"unknown probe type '{letter}' (p: entry, r: return, "
                                      "t: tracepoint, u: USDT)")
    if letter == "t":
        return _tracepoint_spec(raw, library, name, regex)
    if letter == "u":
        return _usdt_spec(raw, library, name, regex)
    return _function_spec(raw, letter, library, name, regex)


def _line_spec(raw: str, parts: list[str], regex: bool) -> ProbeSpec | None:
    """[p:]BINARY:FILE:LINE or [p:]BINARY:FUNCTION:RELLINE, else None. Told
    from p:LIB:FUNC by the number last (FILE ends like a source file)."""
    if len(parts) == 4 and parts[0] in ("p", "r"):
        letter, parts = parts[0], parts[1:]
    elif len(parts) == 3 and parts[0] not in ("p", "r", "t", "u"):
        letter = "p"
    elif len(parts) == 3 and parts[0] in ("p", "r") and parts[2].strip().isdigit():
        raise _bad(raw, parts[2], "a line needs its file or function: write "
                                  "BINARY:FILE.c:LINE or BINARY:FUNCTION:LINE")
    else:
        return None
    library, where, line_text = parts
    from .lineprobes import is_source_file   # here: DWARF's modules cost 20 ms to import
    if not line_text.isdigit() and not is_source_file(where):
        return None   # not a line spec: the usual parser says why
    if letter == "r":
        raise _bad(raw, "r:", "a source line has no return probe (use p: or no prefix)")
    if regex:
        raise _bad(raw, "", "source-line probes take no regular expression")
    if not library:
        raise _bad(raw, ":" + where, "a source line needs its binary first "
                                     "(BINARY:FILE.c:LINE or BINARY:FUNCTION:LINE)")
    if not line_text.isdigit():
        raise _bad(raw, line_text, "the line is not a number (write BINARY:FILE.c:LINE or "
                                   "BINARY:FUNCTION:LINE, LINE relative to the function's first)")
    line = int(line_text)
    if is_source_file(where):
        if line == 0:
            raise _bad(raw, line_text, "source lines count from 1")
        return ProbeSpec("uprobe", library, "", offset=0, text=raw, line=line, source_file=where)
    if not _NAME.fullmatch(where):
        raise _bad(raw, where, "neither a source file (FILE.c) nor a function name")
    return ProbeSpec("uprobe", library, where, offset=0, text=raw, line=line)


def _split_offset(raw: str, name: str) -> tuple[str, int]:
    if "+" not in name:
        return name, 0
    base, _, off = name.partition("+")
    try:
        offset = int(off, 0)
    except ValueError:
        raise _bad(raw, "+" + off, "the offset is not a number (write FUNC+0x10 or FUNC+16)") from None
    if offset < 0:
        raise _bad(raw, "+" + off, "the offset must not be negative")
    return base, offset


def _check_regex(raw: str, name: str) -> None:
    try:
        re.compile(name)
    except re.error as exc:
        raise _bad(raw, name, f"invalid regular expression: {exc}") from None


def _function_spec(raw: str, letter: str, library: str, name: str, regex: bool) -> ProbeSpec:
    kernel = library == ""
    kind = ("k" if kernel else "u") + ("retprobe" if letter == "r" else "probe")
    if not name:
        raise _bad(raw, "", "no function name")
    offset = 0
    if not regex:
        name, offset = _split_offset(raw, name)
        if offset and letter == "r":
            raise _bad(raw, f"+{offset:#x}", "an offset makes no sense on a return probe")
        pattern = _WILDCARD_NAME if offset == 0 else _NAME
        if not name or not pattern.fullmatch(name):
            raise _bad(raw, name or raw, "not a function name" +
                       (" (wildcards cannot take an offset)" if offset and _has_wildcard(name) else ""))
    else:
        _check_regex(raw, name)
    return ProbeSpec(kind, library, name, "", offset, regex, raw)


def _tracepoint_spec(raw: str, category: str, event: str, regex: bool) -> ProbeSpec:
    for part, what in ((category, "category"), (event, "event")):
        if not part:
            raise _bad(raw, "", f"the tracepoint {what} is empty (write t:CATEGORY:EVENT)")
        if "+" in part:
            raise _bad(raw, part, "tracepoints take no offset")
        if regex:
            _check_regex(raw, part)
        elif not _TRACE_NAME.fullmatch(part):
            raise _bad(raw, part, f"not a tracepoint {what} name")
    return ProbeSpec("tracepoint", "", event, category, 0, regex, raw)


def _usdt_spec(raw: str, library: str, probe: str, regex: bool) -> ProbeSpec:
    if not library:
        raise _bad(raw, "u::", "a USDT probe needs the binary or library (write u:LIB:PROBE)")
    if not probe:
        raise _bad(raw, "", "no USDT probe name (write u:LIB:PROBE)")
    if regex:
        _check_regex(raw, probe)
    else:
        for piece in probe.split(":"):
            if not piece or not _WILDCARD_NAME.fullmatch(piece) or "+" in piece:
                raise _bad(raw, piece or probe, "not a USDT probe name")
    return ProbeSpec("usdt", library, probe, "", 0, regex, raw)


# ---------------------------------------------------------------------------
# Resolution: what a spec means on this system


@dataclass(frozen=True)
class ResolvedProbe:
    """One concrete attach point."""

    kind: str
    name: str                 # display name: "malloc", "syscalls:sys_enter_read", ...
    function: str = ""        # symbol, event or USDT probe name
    binary: str = ""          # absolute path (uprobes, USDT)
    address: int = 0          # symbol address as the ELF table gives it (uprobes)
    offset: int = 0
    category: str = ""        # tracepoints
    spec: ProbeSpec | None = field(default=None, compare=False)
    semaphore: bool = False   # a USDT probe guarded by an is-enabled semaphore
    mechanism: str = ""       # kernel functions: "kprobe" or "fentry"
    params: tuple[str, ...] = ()   # fentry: the function's parameters, from BTF
    place: Any = field(default=None, compare=False)   # a source line: its lineprobes.Place

    @property
    def via_fentry(self) -> bool:
        return self.mechanism == "fentry"

    def program_name(self, fn_name: str) -> str:
        """The name BPF function `fn_name` must carry to attach here: itself,
        except for fentry/fexit, whose name selects the kernel function."""
        if not self.via_fentry:
            return fn_name
        entry, ret = _fentry_prefixes()
        return (ret if self.kind == "kretprobe" else entry) + self.function

    def entry(self) -> "ResolvedProbe":
        """The entry twin of a return probe (itself for others)."""
        kind = {"uretprobe": "uprobe", "kretprobe": "kprobe"}.get(self.kind, self.kind)
        return dataclasses.replace(self, kind=kind)

    def returning(self) -> "ResolvedProbe":
        """The return twin of an entry probe (itself for others)."""
        if self.place is not None:
            raise line_has_no_return(self.spec.text if self.spec else self.name)
        kind = {"uprobe": "uretprobe", "kprobe": "kretprobe"}.get(self.kind, self.kind)
        return dataclasses.replace(self, kind=kind)

    @property
    def target(self) -> str:
        if self.kind == "tracepoint":
            return f"{self.category}:{self.function}"
        if self.binary:
            return f"{self.binary}:{self.function}"
        return self.function

    def attach(self, prog: Any, fn_name: str, pid: int | None = None) -> None:
        """Attach BPF function `fn_name` of loader.Program `prog` here.

        `pid` narrows uprobes in the kernel (only that process traps); USDT
        probes are attached by BCC from `usdt_context()` when it compiles.
        """
        if self.kind in ("kprobe", "kretprobe") and self.via_fentry:
            prog.attach_fentry(self.function, self.program_name(fn_name),
                               retprobe=self.kind == "kretprobe")
        elif self.kind in ("kprobe", "kretprobe"):
            prog.attach_kprobe(self.function, fn_name, retprobe=self.kind == "kretprobe")
        elif self.place is not None:   # a source line: its address (a static function's
            prog.attach_uprobe(self.binary, fn_name,   # name may be in several files)
                               address=self.address + self.offset, pid=pid or -1)
        elif self.kind in ("uprobe", "uretprobe"):
            prog.attach_uprobe(self.binary, fn_name, symbol=self.function, offset=self.offset,
                               retprobe=self.kind == "uretprobe", pid=pid or -1)
        elif self.kind == "tracepoint":
            prog.attach_tracepoint(self.category, self.function, fn_name)
        elif self.kind == "usdt":   # attached by BCC at load; listed for teardown
            prog.note_attached("usdt", self.target, fn_name)
        else:
            raise ValueError(f"unknown probe kind {self.kind}")

    def usdt_context(self, fn_name: str, pid: int | None = None) -> Any:
        """A bcc.USDT context with this probe enabled for `fn_name`; pass it
        to Program.from_file(..., usdt=[...]) (BCC generates the argument
        readers and attaches while compiling)."""
        if self.kind != "usdt":
            raise ValueError("usdt_context() is for USDT probes only")
        if pid and not _maps_file(pid, self.binary):
            pid = None   # e.g. a command held before exec: its image is not there yet
        if self.semaphore and not pid:
            # BCC sets the semaphore in a running process's memory; a command
            # held before exec has not mapped the binary yet.
            raise UsageError(f"USDT probe {self.function} in {self.binary} is guarded by a "
                             "semaphore, which can only be set in a running process: give "
                             "-p PID (not -- COMMAND, not system-wide)")
        try:
            ctx = open_usdt(self.binary, pid)
            ctx.enable_probe(self.function, fn_name)
        except UsdtPathError:
            raise
        except Exception:  # bcc raises USDTException / bare Exception
            hint = ("is the process running this binary?" if pid else
                    "probes guarded by a semaphore can only be enabled in a running "
                    "process: give -p PID")
            raise NotFoundError(f"cannot enable USDT probe {self.function} in {self.binary}"
                                f"{f' for pid {pid}' if pid else ''}: {hint}") from None
        return ctx


def _maps_file(pid: int, path: str) -> bool:
    from ..symbolize.buildid import mapped_files
    real = os.path.realpath(path)
    return any(os.path.realpath(f) == real for f in mapped_files(pid))


def resolve(spec: ProbeSpec, *, pid: int | None = None, limit: int = DEFAULT_LIMIT) -> list[ResolvedProbe]:
    """Expand `spec` into concrete probes; errors name what was searched."""
    if spec.kind == "tracepoint":
        found = _resolve_tracepoints(spec)
    elif spec.is_kernel:
        found = _resolve_kernel(spec)
    elif spec.kind == "usdt":
        found = _resolve_usdt(spec, pid)
    elif spec.is_line:
        found = _resolve_line(spec, pid)
    else:
        found = _resolve_user(spec, pid)
    if len(found) > limit:
        raise UsageError(f"'{spec.text}' matches {len(found)} probes, more than the limit of "
                         f"{limit}: narrow the pattern")
    return found


def resolve_all(specs: list[ProbeSpec], *, pid: int | None = None,
                limit: int = DEFAULT_LIMIT) -> list[ResolvedProbe]:
    """Resolve several specs, dropping duplicates, under one overall limit."""
    out: list[ResolvedProbe] = []
    seen: set[tuple] = set()
    for spec in specs:
        for probe in resolve(spec, pid=pid, limit=limit):
            key = (probe.kind, probe.binary, probe.address or probe.function, probe.category,
                   probe.offset)
            if key not in seen:
                seen.add(key)
                out.append(probe)
    if len(out) > limit:
        raise UsageError(f"the probes given match {len(out)} places, more than the limit of "
                         f"{limit}: narrow the patterns")
    return out


def program_defines(attachments: Iterable[tuple[ResolvedProbe, str]]) -> dict[str, Any]:
    """`#define`s that give each BPF function attached through fentry the name
    BCC binds to its kernel function (see the module's docstring), and
    PTK_FENTRY. Two uses of one name cannot be: a trampoline program serves one
    function and direction."""
    renames: dict[str, str] = {}
    owner: dict[str, str] = {}
    for probe, fn_name in attachments:
        if not probe.via_fentry:
            continue
        name = probe.program_name(fn_name)
        if renames.get(fn_name, name) != name:
            raise UsageError(f"BPF function {fn_name} is attached to both {renames[fn_name]} and "
                             f"{name}: through fentry each kernel function needs its own BPF "
                             "function")
        if owner.get(name, fn_name) != fn_name:
            where = "return of" if probe.kind == "kretprobe" else "entry of"
            raise UsageError(f"two probes on the {where} kernel function {probe.function}: "
                             "through fentry one BPF program serves one kernel function and "
                             "direction; give each such probe its own run")
        renames[fn_name], owner[name] = name, fn_name
    # Hand-written C reads arguments with PTK_FUNC_ARG (bpf/pytracekit.h), which
    # this switches to the trampoline's context.
    return {**renames, "PTK_FENTRY": 1} if renames else {}


def fentry_prefixes(bcc_version: str) -> tuple[str, str]:
    """The entry and return name prefixes by which a BCC release binds a
    program to a kernel function; since 0.28 they name the module too
    (kfunc__vmlinux__vfs_read)."""
    try:
        major, minor = (int(x) for x in bcc_version.split(".")[:2])
    except ValueError:
        major, minor = 0, 0
    if (major, minor) >= (0, 28):
        return "kfunc__vmlinux__", "kretfunc__vmlinux__"
    return "kfunc__", "kretfunc__"


@lru_cache(maxsize=1)
def _fentry_prefixes() -> tuple[str, str]:
    return fentry_prefixes(getattr(_bcc(), "__version__", "0"))


def _bcc() -> Any:
    from ..kernel import bccload, tracefs
    if os.geteuid() == 0:
        tracefs.tracefs_root()   # BCC reads its tracefs path at import
        return bccload.import_bcc()
    import bcc
    return bcc


def name_matcher(pattern: str, regex: bool):
    """A predicate for names: a regular expression (matched whole, as BCC's
    -r anchors it) or a shell wildcard."""
    if regex:
        compiled = re.compile(pattern)
        return lambda name: compiled.fullmatch(name) is not None
    if _has_wildcard(pattern):
        compiled = re.compile(fnmatch.translate(pattern))
        return lambda name: compiled.match(name) is not None
    return lambda name: name == pattern


# -- tracepoints --------------------------------------------------------------

def _resolve_tracepoints(spec: ProbeSpec) -> list[ResolvedProbe]:
    from ..kernel import tracefs
    if not spec.is_pattern:
        tracefs.tracepoint(spec.category, spec.function)   # NotFoundError with hints
        names = [f"{spec.category}:{spec.function}"]
    else:
        cat_ok = name_matcher(spec.category, spec.regex)
        ev_ok = name_matcher(spec.function, spec.regex)
        names = [n for n in tracefs.list_tracepoints()
                 if cat_ok(n.split(":", 1)[0]) and ev_ok(n.split(":", 1)[1])]
        if not names:
            raise NotFoundError(f"no tracepoint matches '{spec.text}' (searched "
                                f"{tracefs.tracefs_root()}/events; `pytracekit list` lists them)")
    out = []
    for name in names:
        category, event = name.split(":", 1)
        out.append(ResolvedProbe("tracepoint", name, event, category=category, spec=spec))
    return out


# -- kernel functions ---------------------------------------------------------

KERNEL_PROBES_ENV = "PYTRACEKIT_KERNEL_PROBES"


def kernel_mechanism(function: str = "") -> str:
    """How kernel functions are probed here: "kprobe", else "fentry"; raises
    the error that names the missing features and the tracepoints to use.

    PYTRACEKIT_KERNEL_PROBES=fentry chooses fentry without proving it first
    (cheaper per hit than kprobes where both exist; a refusal then comes from
    the load), =kprobe chooses kprobes; auto (the default) is as above."""
    from ..kernel import features
    choice = os.environ.get(KERNEL_PROBES_ENV, "auto")
    if choice not in ("auto", "kprobe", "fentry"):
        raise UsageError(f"{KERNEL_PROBES_ENV}={choice}: give auto, kprobe or fentry")
    if choice != "auto":
        return choice
    if features.kprobes_available()[0]:
        return "kprobe"
    if features.fentry_available()[0]:
        return "fentry"
    raise kernel_probe_unsupported(function or "functions")


def kernel_functions() -> list[str]:
    """The functions ftrace can hook (kprobes and trampolines both need it
    for a fast attach; kallsyms' text symbols where tracefs does not say)."""
    from ..kernel import tracefs
    path = tracefs.tracefs_root() / "available_filter_functions"
    try:
        text = path.read_text()
        return sorted({line.split()[0] for line in text.splitlines() if line.strip()})
    except OSError:
        names = set()
        with open("/proc/kallsyms") as f:
            for line in f:
                fields = line.split()
                if len(fields) >= 3 and fields[1] in "tT":
                    names.add(fields[2])
        return sorted(names)


def fentry_functions() -> list[str]:
    """Kernel functions fentry can attach to: described by BTF and traceable."""
    from ..kernel import btf
    described = btf.vmlinux().funcs
    return [name for name in kernel_functions() if name in described]


def _resolve_kernel(spec: ProbeSpec) -> list[ResolvedProbe]:
    mechanism = kernel_mechanism(spec.function)
    fentry = mechanism == "fentry"
    if fentry and spec.offset:
        raise UsageError(f"'{spec.text}': fentry attaches at a function's entry only, not at "
                         "an offset (offsets need kprobes)")
    if spec.is_pattern:
        ok = name_matcher(spec.function, spec.regex)
        names = [n for n in (fentry_functions() if fentry else kernel_functions()) if ok(n)]
        if not names:
            searched = ("the functions both in the kernel's BTF and in available_filter_functions"
                        if fentry else "available_filter_functions")
            raise NotFoundError(f"no kernel function matches '{spec.text}' (searched {searched})")
    else:
        names = [spec.function]
        if fentry:
            _check_fentry_target(spec.function)
    out = []
    for name in names:
        params = _btf_params(name) if fentry else ()
        out.append(ResolvedProbe(spec.kind, name, name, offset=spec.offset, spec=spec,
                                 mechanism=mechanism, params=params))
    return out


def _btf_params(function: str) -> tuple[str, ...]:
    from ..kernel import btf
    return btf.vmlinux().function_params(function) or ()


def _check_fentry_target(function: str) -> None:
    from ..kernel import btf
    if function not in btf.vmlinux().funcs:
        raise NotFoundError(f"no kernel function {function} in the kernel's BTF (fentry "
                            "attaches only to functions BTF describes; `pytracekit list "
                            "'PATTERN'` lists those it can)")
    if function not in set(kernel_functions()):
        raise NotFoundError(f"kernel function {function} cannot be traced: it is not in "
                            "available_filter_functions (inlined or marked notrace)")


# -- user functions -----------------------------------------------------------

def find_binary(library: str, pid: int | None = None) -> str:
    """A library name or path as the dynamic linker would find it.

    Paths are taken as they are; `c` or `libc.so.6` go through the loaded
    libraries of `pid` and then the linker cache (libbcc's which_so), then
    executables on PATH."""
    if "/" in library:
        path = os.path.abspath(library)
        if not os.path.isfile(path):
            raise NotFoundError(f"no such binary or library: {library}")
        return path
    bcc = _bcc()
    import ctypes
    from bcc.libbcc import lib
    for where in ([pid] if pid else []) + [0]:
        res = lib.bcc_procutils_which_so(library.encode(), where)
        if res:
            path = ctypes.cast(res, ctypes.c_char_p).value.decode()
            lib.bcc_procutils_free(res)
            return path
    exe = bcc.BPF.find_exe(library.encode())
    if exe:
        return os.path.abspath(exe.decode() if isinstance(exe, bytes) else exe)
    raise NotFoundError(f"no library or executable named '{library}' (searched "
                        f"{'the maps of pid %d, ' % pid if pid else ''}the linker cache and "
                        "PATH; give a path)")


def function_symbols(binary: str) -> list[tuple[str, int]]:
    """(name, address) of every function symbol in an ELF file (static and dynamic)."""
    bcc = _bcc()
    try:
        with signals_held():   # it calls back into Python per symbol
            found = bcc.BPF.get_user_functions_and_addresses(binary.encode(), b".*")
    except Exception as exc:
        raise NotFoundError(f"cannot read symbols of {binary}: {exc}") from None
    return [(n.decode(errors="replace") if isinstance(n, bytes) else n, a) for n, a in found]


def _preferred(names: list[str]) -> str:
    """Of several names for one address, the one people call (malloc, not __libc_malloc)."""
    return min(names, key=lambda n: (len(n) - len(n.lstrip("_")), "@" in n, len(n), n))


def _resolve_user(spec: ProbeSpec, pid: int | None) -> list[ResolvedProbe]:
    binary = find_binary(spec.library, pid)
    symbols = function_symbols(binary)
    if spec.is_pattern:
        ok = name_matcher(spec.function, spec.regex)
        by_address: dict[int, list[str]] = {}
        for name, address in symbols:
            if ok(name):
                by_address.setdefault(address, []).append(name)
        if not by_address:
            raise NotFoundError(f"no function in {binary} matches '{spec.function}' "
                                f"({len(symbols)} function symbols searched)")
        chosen = sorted((_preferred(names), address) for address, names in by_address.items())
    else:
        matches = [a for n, a in symbols if n == spec.function or n.split("@")[0] == spec.function]
        if not matches:
            raise NotFoundError(f"no function {spec.function} in {binary} "
                                f"({len(symbols)} function symbols searched)")
        chosen = [(spec.function, matches[0])]
    suffix = f"+{spec.offset:#x}" if spec.offset else ""
    return [ResolvedProbe(spec.kind, name + suffix, name, binary=binary, address=address,
                          offset=spec.offset, spec=spec) for name, address in chosen]


def _resolve_line(spec: ProbeSpec, pid: int | None) -> list[ResolvedProbe]:
    """A source line: a uprobe at its address in each function it has code
    in (`address` the function's, `offset` the line's into it)."""
    from . import lineprobes
    binary = find_binary(spec.library, pid)
    info = lineprobes.debug_info(binary)
    assert spec.line is not None
    places = (info.place_for_file_line(spec.source_file, spec.line) if spec.source_file
              else info.place_for_function_line(spec.function, spec.line))
    return [ResolvedProbe(spec.kind, place.label, place.function.name, binary=binary,
                          address=place.function.low, offset=place.address - place.function.low,
                          spec=spec, place=place) for place in places]


# -- USDT ---------------------------------------------------------------------

class UsdtPathError(NotSupportedError):
    """BCC cannot read this binary's USDT notes because of its path."""


def open_usdt(binary: str | None, pid: int | None = None) -> Any:
    """bcc.USDT for a binary (and/or a process). BCC encodes the path as ASCII
    before it sets the object up, and the half-made object's __del__ then
    prints a traceback ("Exception ignored ... USDT.__del__"): refuse such a
    path in one line instead. BCC's own failures (no notes, no such process)
    are left to the caller."""
    if binary is not None and not binary.isascii():
        raise UsdtPathError(f"BCC cannot read the USDT notes of {binary}: its path is not "
                            "ASCII (link or copy the binary to a plain path)")
    bcc = _bcc()
    try:
        return bcc.USDT(pid=pid, path=binary) if pid else bcc.USDT(path=binary)
    except Exception as exc:  # bcc raises USDTException / bare Exception
        target = f"pid {pid}" if pid and not binary else binary
        raise NotFoundError(f"cannot read USDT notes of {target}: "
                            f"{str(exc).splitlines()[0]}") from None


def enumerate_usdt(binary: str | None, pid: int | None = None) -> list[Any]:
    """BCC's probe objects of a binary's (or a process's) USDT notes. BCC's
    own failures (no notes) raise as BCC raises them."""
    ctx = open_usdt(binary, pid)
    with signals_held():   # it calls back into Python per probe
        return ctx.enumerate_probes()


def usdt_probes(binary: str, pid: int | None = None) -> dict[str, bool]:
    """'provider:name' -> guarded by a semaphore, for every USDT probe in a
    binary (or in a process)."""
    try:
        probes = enumerate_usdt(binary, pid)
    except (NotFoundError, UsdtPathError):
        raise
    except Exception as exc:
        raise NotFoundError(f"cannot read USDT notes of {binary}: {str(exc).splitlines()[0]}") from None
    return {p.short_name(): bool(p.semaphore) for p in sorted(probes, key=lambda p: p.short_name())}


def _resolve_usdt(spec: ProbeSpec, pid: int | None) -> list[ResolvedProbe]:
    binary = find_binary(spec.library, pid)
    guarded = usdt_probes(binary, pid)
    available = sorted(guarded)
    ok = name_matcher(spec.function, spec.regex)
    if ":" in spec.function:
        names = [p for p in available if ok(p)]
    else:
        names = [p for p in available if ok(p.split(":", 1)[1])]
    if not names:
        listing = ", ".join(available[:8]) + (" ..." if len(available) > 8 else "")
        raise NotFoundError(f"no USDT probe '{spec.function}' in {binary} "
                            f"({'probes: ' + listing if available else 'it has no USDT notes'})")
    return [ResolvedProbe("usdt", name.split(":", 1)[1], name, binary=binary, spec=spec,
                          semaphore=guarded[name]) for name in names]
