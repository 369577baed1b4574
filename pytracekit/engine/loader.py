"""Compile `bpf/<name>.bpf.c` through BCC against BTF-derived headers, attach
probes, read maps, detach.

One `Program` owns one BCC module and everything attached from it; it is a
context manager and `close()` detaches all. Compiler and verifier output is
captured (BCC writes it straight to fd 2) and becomes a short error, with the
full text kept for --verbose.
"""
from __future__ import annotations

import contextlib
import errno as errnos
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from . import progcache, settings, startup
from ..errors import (CompileError, DryRunComplete, EbpfPrinted, NotFoundError,
                      NotSupportedError, PrivilegeError, PytracekitError, VerifierError, tail)
from ..model import LossReport
from .runner import signals_held, stops_end_at_once

def _bpf_dir() -> Path:
    """bpf/ of this checkout, else where a wheel put it (<prefix>/share/pytracekit/bpf);
    PYTRACEKIT_BPF_DIR overrides."""
    if "PYTRACEKIT_BPF_DIR" in os.environ:
        return Path(os.environ["PYTRACEKIT_BPF_DIR"])
    checkout = Path(__file__).resolve().parent.parent.parent / "bpf"
    if (checkout / COMMON_HEADER).is_file():
        return checkout
    import site
    for prefix in (sys.prefix, site.getuserbase()):
        installed = Path(prefix) / "share" / "pytracekit" / "bpf"
        if (installed / COMMON_HEADER).is_file():
            return installed
    return checkout     # missing: the error names the checkout's path


COMMON_HEADER = "pytracekit.h"
# enum ptk_loss in bpf/pytracekit.h, slot by slot, as LossReport fields
LOSS_SLOTS = ("lost_events", "stack_errors", "map_full", "unreadable_strings",
              "unwind_fallback", "unwind_fp_steps", "unwind_incomplete")
BPF_DIR = _bpf_dir()
_INCLUDE_COMMON = re.compile(r'^\s*#\s*include\s+"pytracekit\.h"\s*$', re.M)
_INCLUDE_VMLINUX = re.compile(r'^\s*#\s*include\s+"vmlinux\.h"\s*$', re.M)
# Headers shared by a family of tools (bpf/ptk_*.h): pasted like the common one.
_INCLUDE_FAMILY = re.compile(r'^\s*#\s*include\s+"(ptk_\w+\.h)"\s*$', re.M)


def require_root() -> None:
    if os.geteuid() != 0:
        raise PrivilegeError("pytracekit needs root (CAP_BPF and CAP_PERFMON) to load BPF "
                             "programs: run it with sudo")


def read_source(name: str) -> str:
    path = BPF_DIR / f"{name}.bpf.c"
    try:
        return path.read_text()
    except FileNotFoundError:
        raise NotFoundError(f"no BPF program {path}") from None


def code_slot(name: str) -> str:
    """The one spelling of a place in bpf/ C that generated code fills
    (`Program.from_file(replace={code_slot("X"): code})`): a comment, so the file
    compiles on its own too."""
    return f"/* PTK_SLOT {name} */"


def expand_source(source: str) -> str:
    """Paste the common header in place of its #include (see bpf/pytracekit.h),
    and bpf/ptk_*.h family headers in place of theirs, for the same reason."""
    common = (BPF_DIR / COMMON_HEADER).read_text()
    if _INCLUDE_COMMON.search(source):
        source = _INCLUDE_COMMON.sub(lambda _m: common, source, count=1)
    return _INCLUDE_FAMILY.sub(lambda m: _family_header(m.group(1)), source)


def _family_header(name: str) -> str:
    """The header, with the family headers it includes pasted too (ptk_stacks.h
    includes ptk_follow.h); their include guards drop a second copy."""
    try:
        text = (BPF_DIR / name).read_text()
    except FileNotFoundError:
        raise NotFoundError(f"no BPF header {BPF_DIR / name}") from None
    return _INCLUDE_FAMILY.sub(lambda m: _family_header(m.group(1)), text)


# Defines that carry a process or thread id: a nonzero one is read from the
# ptk_config map at run time (see bpf/pytracekit.h), not compiled in, so a
# program's text is the same for every pid and the program cache serves it.
RUN_TIME_IDS = ("FILTER_PID", "FILTER_TID", "FILTER_TPID", "FILTER_PPID", "EXEC_PID",
                "FOLLOW_PID", "FOLLOW_ROOT", "SELF_PID")


def run_time_ids(defines: Mapping[str, Any]) -> tuple[dict[str, Any], dict[int, int]]:
    """`defines` with each nonzero id of RUN_TIME_IDS replaced by a read of its
    ptk_config slot, and the values to write there ({slot: id}). Zero ("any")
    stays a literal 0, so an unfiltered program keeps no check at all."""
    out, config = dict(defines), {}
    for name in RUN_TIME_IDS:
        value = out.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            out[name] = f"ptk_config_value({len(config)})"
            config[len(config)] = value
    if config:
        out["PTK_CONFIG_SLOTS"] = len(config)
    return out, config


def defines_text(defines: Mapping[str, Any]) -> str:
    return "".join(f"#define {k} {_c_value(v)}\n" for k, v in defines.items())


def _c_value(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def _report_exit_during_capture(log: Any, saved_fd: int, name: str) -> None:
    """Runs from C's exit(): LLVM ends the process that way on some errors (a
    program over the 512-byte BPF stack), which would otherwise print nothing."""
    log.flush()
    log.seek(0)
    text = log.read().decode(errors="replace")
    line = (f"pytracekit: error: BPF program {name} does not compile: "
            f"{_first_error(text)}\n")
    os.write(saved_fd, line.encode())
    if settings.current().verbose:
        os.write(saved_fd, text.encode())


@contextlib.contextmanager
def _exit_reported(log: Any, saved_fd: int, name: str) -> Iterator[None]:
    """Arm a C exit handler for the duration of one capture, then remove it.
    The handler and its private "DSO handle" belong to this capture (no module
    state): __cxa_finalize(handle) runs it, disarmed by then, and drops it, so
    no Python callback is left to run after the interpreter is gone."""
    import ctypes
    armed = True

    def on_exit(_arg: Any) -> None:
        if armed:
            _report_exit_during_capture(log, saved_fd, name)
    hook = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(on_exit)
    handle = ctypes.create_string_buffer(1)
    libc = ctypes.CDLL(None)
    libc.__cxa_atexit(hook, None, ctypes.byref(handle))
    try:
        yield
    finally:
        armed = False
        # __cxa_finalize calls on_exit (disarmed): a Ctrl-C/SIGTERM raised inside
        # that ctypes callback would be printed and dropped, and the run would go
        # on to its command's end (test_command_passthrough's signal tests)
        with signals_held():
            libc.__cxa_finalize(ctypes.byref(handle))


@contextlib.contextmanager
def captured_stderr(name: str = "") -> Iterator[list[str]]:
    """Capture what C code writes to fd 2 (clang diagnostics, verifier logs)."""
    out: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    # A memory file, not tempfile's (its import, with shutil's, is a cost at every start)
    with open(os.memfd_create("pytracekit-stderr", os.MFD_CLOEXEC), "w+b") as tmp, \
            _exit_reported(tmp, saved, name):
        os.dup2(tmp.fileno(), 2)
        try:
            yield out
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            out.append(tmp.read().decode(errors="replace"))


@contextlib.contextmanager
def _working_directory(directory: Path) -> Iterator[None]:
    """Compile from `directory` (the program's own header directory).

    BCC's clang frontend puts the process's working directory first on the
    include path (`-I <cwd>`, iovisor/bcc src/cc/frontends/clang/loader.cc),
    so a linux/types.h planted where root happens to run pytracekit would be
    compiled into every program. Binaries and paths given by the user are
    made absolute before this point (probes.find_binary)."""
    saved = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.chdir(directory)
        yield
    finally:
        os.fchdir(saved)
        os.close(saved)


def _first_error(log: str) -> str:
    if BCC_TEXTS.stack_limit in log:
        return ("more than the 512 bytes of BPF stack: move large local variables "
                "into a per-CPU array map")
    for line in log.splitlines():
        if BCC_TEXTS.clang_error in line:
            return line.split(BCC_TEXTS.clang_error, 1)[1].strip()
    return tail(log, 1) or "unknown error"


@dataclass
class Probe:
    """One attachment, for listing and for the teardown check."""

    kind: str
    target: str
    fn_name: str


@dataclass
class Program:
    """A compiled BCC module and its attachments."""

    name: str
    source: str
    defines: dict[str, Any] = field(default_factory=dict)
    usdt: list[Any] = field(default_factory=list)   # bcc.USDT contexts
    bpf: Any = None
    probes: list[Probe] = field(default_factory=list)
    _loaded: list[str] = field(default_factory=list)
    _links: list[int] = field(default_factory=list)        # uprobe_multi link fds
    _multi_loaded: set[str] = field(default_factory=set)   # loaded for uprobe_multi
    _drained: dict[str, Any] = field(default_factory=dict)  # mapdrain.drained snapshots
    _cache_entry: tuple[Path, str] | None = None           # (path, key) to store at close
    config: dict[int, int] = field(default_factory=dict)    # ptk_config slots: run_time_ids
    # detach_tracepoints_in_background's thread and the tracepoints it closes
    _detaching: tuple[Any, list[tuple[bytes, int]]] | None = None

    # -- construction -------------------------------------------------------

    @classmethod
    def from_file(cls, name: str, defines: Mapping[str, Any] | None = None,
                  replace: Mapping[str, str] | None = None, usdt: list[Any] | None = None,
                  while_compiling: Callable[[], Any] | None = None) -> "Program":
        """Load bpf/<name>.bpf.c; `replace` substitutes generated code for
        placeholder tokens, `code_slot(NAME)` for pytracekit's own programs
        (tools whose C is assembled from user specs). A token the file lacks
        is an error: the code would silently not be there. `while_compiling`
        is called just before BCC compiles (not on a program-cache hit): work
        worth overlapping with clang, which runs without the GIL."""
        source = read_source(name)
        for token, code in (replace or {}).items():
            if token not in source:
                raise PytracekitError(f"bpf/{name}.bpf.c has no {token} for generated code")
            source = source.replace(token, code)
        return cls.from_text(name, source, defines, usdt, while_compiling)

    @classmethod
    def from_text(cls, name: str, source: str, defines: Mapping[str, Any] | None = None,
                  usdt: list[Any] | None = None,
                  while_compiling: Callable[[], Any] | None = None) -> "Program":
        defines = dict(defines or {})
        from .runner import held_commands
        if defines.get("FILTER_PID") in held_commands:   # see FILTER_AFTER_EXEC in pytracekit.h
            defines.setdefault("FILTER_AFTER_EXEC", 1)
        if defines.get("CFI_UNWIND") and os.environ.get("PYTRACEKIT_UNWIND_ROWS"):
            # a smaller unwind row array (ptk_unwind.h), for tests of its eviction
            defines.setdefault("UNWIND_ROWS", int(os.environ["PYTRACEKIT_UNWIND_ROWS"]))
        defines, config = run_time_ids(defines)
        prog = cls(name=name, source=expand_source(source), defines=defines,
                   usdt=list(usdt or []), config=config)
        prog.compile(while_compiling)
        return prog

    @property
    def full_text(self) -> str:
        """The program as BCC compiles it: parameters first, then the source."""
        return defines_text(self.defines) + self.source

    def compile(self, while_compiling: Callable[[], Any] | None = None) -> None:
        if settings.current().ebpf:
            print(self.full_text)
            raise EbpfPrinted()
        require_root()
        startup.mark(f"{self.name}: options, probes resolved, program text")
        from ..kernel import bccload, headers, mounts
        mounts.tracefs_root()           # BCC reads its tracefs path at import
        text = self.full_text
        with signals_held():   # libbpf's btf_dump calls back into Python per line
            tree = headers.include_tree()     # (its first build too)
            # held until compiled (and its cache entry read): the cache's pruning leaves it
            program_dir = progcache.ProgramDir(lambda: headers.program_header(tree, text))
        header_dir = program_dir.path
        startup.mark(f"{self.name}: BTF header")
        # By absolute path: a vmlinux.h in the current directory must not win.
        text = _INCLUDE_VMLINUX.sub(f'#include "{header_dir}/vmlinux.h"', text)
        cflags = [f"-I{header_dir}", "-Wno-macro-redefined", "-Wno-unused-function"]
        if self.usdt:   # see bpf/usdt_compat.h
            cflags += ["-include", str(BPF_DIR / "usdt_compat.h")]
        with program_dir, _environ("BCC_KERNEL_SOURCE", str(tree.source)), \
                captured_stderr(self.name) as log, _working_directory(header_dir), \
                stops_end_at_once():
            # after BCC_KERNEL_SOURCE is set and tracefs is mounted; LLVM only when compiling
            bccload.import_bcc()
            _fix_uprobe_ref_ctr_offset()
            startup.mark(f"{self.name}: bcc imported")
            self.bpf = self._from_cache(text, cflags, header_dir)
            failure = None
            if self.bpf is None:
                if while_compiling is not None:
                    while_compiling()
                try:
                    _clear_errno()
                    from .bpfloop import linking_bpf   # bcc.BPF that links bpf_loop callbacks
                    self.bpf = linking_bpf()(text=text.encode(), cflags=cflags,
                                             usdt_contexts=self.usdt)
                except Exception as exc:  # BCC raises bare Exception
                    self.bpf = None
                    self._cache_entry = None
                    failure = BccFailure.of(exc)
                startup.mark(f"{self.name}: compiled and loaded (clang, verifier)")
            else:
                startup.mark(f"{self.name}: loaded from the program cache")
        output = log[0]
        if failure is not None:
            raise _load_error(self.name, failure, output, text)
        if output.strip() and settings.current().verbose:
            sys.stderr.write(output)
        self._write_config()
        for fn in self._autoloaded():
            self._loaded.append(fn)

    def _from_cache(self, text: str, cflags: list[str], header_dir: Path) -> Any:
        """A BPF object loaded from the program cache, else None (and the entry
        to write at close() is remembered). See progcache.py."""
        if not progcache.enabled() or not progcache.cacheable(text):
            return None
        if self.usdt:   # untested from the cache (USDT probes here are per process anyway)
            progcache.note(f"{self.name} reads USDT arguments: not cached")
            return None
        import bcc
        try:
            key = progcache.key(text, cflags, _usdt_text(self.usdt), bcc.__version__)
        except OSError as exc:
            progcache.note(f"{self.name}: no key ({exc}), compiling")
            return None
        path = progcache.entry_path(header_dir, key)
        entry = progcache.lookup(path, key)
        if entry is not None:
            try:
                bpf = progcache.cached_bpf(entry, self.usdt)
            except Exception as exc:   # pylint: disable=broad-except  # Unusable, or a bug here
                progcache.note(f"{self.name}: entry unusable ({exc}), compiling")
            else:
                progcache.note(f"hit for {self.name} ({path})")
                return bpf
        else:
            progcache.note(f"miss for {self.name}, compiling")
        self._cache_entry = (path, key)
        return None

    def set_run_time_id(self, name: str, value: int) -> None:
        """Another value for a run-time id this program was loaded with a
        nonzero value of (stat -r: each run's command)."""
        slot = int(str(self.defines[name]).removeprefix("ptk_config_value(").rstrip(")"))
        self.config[slot] = value
        table = self.bpf["ptk_config"]
        table[table.Key(slot)] = table.Leaf(value)

    def _write_config(self) -> None:
        """The run-time ids (run_time_ids), before any tool attaches a probe."""
        if not self.config:
            return
        table = self.bpf["ptk_config"]
        for slot, value in self.config.items():
            table[table.Key(slot)] = table.Leaf(value)

    def _store_in_cache(self) -> None:
        if self._cache_entry is None or self.bpf is None:
            return
        path, key = self._cache_entry
        self._cache_entry = None
        from ..kernel import bpfsys
        try:
            loads = [(name.decode(), bpfsys.prog_type(fn.fd),
                      bpfsys.TRACE_UPROBE_MULTI if name.decode() in self._multi_loaded else -1)
                     for name, fn in self.bpf.funcs.items()]
            progcache.store(path, progcache.record(self.bpf, key, loads))
        except Exception as exc:   # pylint: disable=broad-except
            # (Unusable, a write error...): the cache must never fail a run's teardown
            progcache.note(f"{self.name} not stored: {exc}")
        else:
            progcache.note(f"stored {self.name} ({path})")

    def _autoloaded(self) -> list[str]:
        # BCC attaches TRACEPOINT_PROBE/RAW_TRACEPOINT_PROBE functions itself.
        return [f.decode() if isinstance(f, bytes) else f for f in (self.bpf.funcs or {})]

    # -- attaching ----------------------------------------------------------

    def _attach(self, kind: str, target: str, fn_name: str, prog_type: int,
                do: Callable[[], Any]) -> None:
        if settings.current().dry_run:
            self._load_only(fn_name, prog_type)
            return
        with captured_stderr() as log:
            try:
                _clear_errno()
                do()
            except Exception as exc:
                failure = BccFailure.of(exc)
            else:
                failure = None
        if failure is not None:
            raise _attach_error(kind, target, failure, log[0])
        self.probes.append(Probe(kind, target, fn_name))

    def _load_only(self, fn_name: str, prog_type: int) -> None:
        self.load_function(fn_name, prog_type)

    def load_function(self, fn_name: str, prog_type: int, attach_type: int = -1) -> Any:
        """Load one function as a program of `prog_type` (BPF.SCHED_CLS, BPF.XDP...)
        and return BCC's handle (its `.fd`), for attachments made outside BCC
        (tc and XDP through netlink, see net.py; uprobe_multi links, which also
        need the expected `attach_type`). The caller detaches it; the program
        itself is unloaded by close()."""
        failure = None
        with captured_stderr() as log:
            try:
                _clear_errno()
                fn = self.bpf.load_func(fn_name, prog_type, attach_type=attach_type)
            except Exception as exc:
                failure = BccFailure.of(exc)
        if failure is not None:   # the log is complete only after the with block
            raise _load_error(fn_name, failure, log[0]) from None
        if fn_name not in self._loaded:
            self._loaded.append(fn_name)
        return fn

    def note_attached(self, kind: str, target: str, fn_name: str) -> None:
        """An attachment BCC made itself (USDT probes, at load): listed for --verbose
        and teardown like the ones made here."""
        self.probes.append(Probe(kind, target, fn_name))

    def attach_tracepoint(self, category: str, event: str, fn_name: str) -> None:
        from ..kernel.tracefs import tracepoint
        tracepoint(category, event)  # a clear NotFoundError for unknown names
        import bcc
        self._attach("tracepoint", f"{category}:{event}", fn_name, bcc.BPF.TRACEPOINT,
                     lambda: self.bpf.attach_tracepoint(tp=f"{category}:{event}", fn_name=fn_name))

    def attach_raw_tracepoint(self, event: str, fn_name: str) -> None:
        import bcc
        self._attach("raw_tracepoint", event, fn_name, bcc.BPF.RAW_TRACEPOINT,
                     lambda: self.bpf.attach_raw_tracepoint(tp=event, fn_name=fn_name))

    def attach_uprobe(self, binary: str, fn_name: str, *, symbol: str | None = None,
                      address: int | None = None, offset: int = 0, retprobe: bool = False,
                      pid: int = -1) -> None:
        import bcc
        kind = "uretprobe" if retprobe else "uprobe"
        target = f"{binary}:{symbol or hex(address or 0)}"

        def do() -> None:
            kwargs: dict[str, Any] = dict(name=binary, fn_name=fn_name, pid=pid)
            if symbol is not None:
                kwargs["sym"] = symbol
            if address is not None:
                kwargs["addr"] = address
            if retprobe:
                self.bpf.attach_uretprobe(**kwargs)
            else:
                if offset:
                    kwargs["sym_off"] = offset
                self.bpf.attach_uprobe(**kwargs)
        self._attach(kind, target, fn_name, bcc.BPF.KPROBE, do)

    def attach_uprobe_multi(self, binary: str, fn_name: str, offsets: list[int],
                            cookies: list[int], pid: int = -1, *, retprobe: bool = False,
                            names: list[str] | None = None) -> None:
        """Attach `fn_name` to every FILE offset of `binary` through ONE
        uprobe_multi link (Linux 6.6+, see features.uprobe_multi_available):
        the function reads its offset's cookie with bpf_get_attach_cookie(ctx).
        Attaching and detaching cost one system call however many offsets
        (each BCC uprobe is its own perf event, and the kernel waits for an
        RCU grace period as each closes). `names` label the probes."""
        fn = self._load_for_uprobe_multi(fn_name)
        if settings.current().dry_run:
            return
        kind = "uretprobe_multi" if retprobe else "uprobe_multi"
        from ..kernel import bpfsys
        link_fd, err = bpfsys.link_create_uprobe_multi(fn.fd, binary, list(offsets), list(cookies),
                                                       pid if pid > 0 else 0, retprobe)
        if link_fd < 0:
            raise _multi_attach_error(kind, binary, len(offsets), err)
        self._links.append(link_fd)
        for i, offset in enumerate(offsets):
            label = names[i] if names else hex(offset)
            self.probes.append(Probe(kind, f"{binary}:{label}", fn_name))

    def _load_for_uprobe_multi(self, fn_name: str) -> Any:
        """Load `fn_name` with expected_attach_type BPF_TRACE_UPROBE_MULTI (the
        kernel refuses the link otherwise). BCC caches loaded functions by name,
        so a function it already loaded as a plain kprobe-type program cannot
        be reused here."""
        import bcc
        from ..kernel import bpfsys
        if fn_name.encode() in (self.bpf.funcs or {}) and fn_name not in self._multi_loaded:
            raise PytracekitError(f"BPF function {fn_name} is already loaded for another kind of "
                                  "attachment: give uprobe_multi links a function of their own")
        fn = self.load_function(fn_name, bcc.BPF.KPROBE, attach_type=bpfsys.TRACE_UPROBE_MULTI)
        self._multi_loaded.add(fn_name)
        return fn

    def attach_kprobe(self, function: str, fn_name: str, *, retprobe: bool = False) -> None:
        from ..kernel import features
        if not features.kprobes_available()[0]:
            from ..kernel.function_probes import kernel_probe_unsupported
            raise kernel_probe_unsupported(function)
        import bcc
        kind = "kretprobe" if retprobe else "kprobe"
        self._attach(kind, function, fn_name, bcc.BPF.KPROBE,
                     lambda: (self.bpf.attach_kretprobe if retprobe else self.bpf.attach_kprobe)(
                         event=function, fn_name=fn_name))

    def attach_fentry(self, function: str, fn_name: str, *, retprobe: bool = False) -> None:
        """Record fentry/fexit program `fn_name` on kernel `function`. BCC loads
        and attaches programs named kfunc__*/kretfunc__* while compiling (their
        name selects the function; see probes.program_defines), so this checks
        that it did."""
        kind = "fexit" if retprobe else "fentry"
        attached = self.bpf.kfunc_exit_fds if retprobe else self.bpf.kfunc_entry_fds
        if fn_name.encode() not in attached:
            raise PytracekitError(f"cannot attach {kind} {function}: the program {fn_name} was "
                                  "not attached while compiling (is it defined under that name?)")
        self.probes.append(Probe(kind, function, fn_name))
        if fn_name not in self._loaded:
            self._loaded.append(fn_name)

    def attach_perf_event(self, ev_type: int, ev_config: int, fn_name: str, *,
                          sample_period: int = 0, sample_freq: int = 0, pid: int = -1,
                          cpu: int = -1, label: str = "") -> None:
        import bcc
        self._attach("perf_event", label or f"{ev_type}:{ev_config}", fn_name, bcc.BPF.PERF_EVENT,
                     lambda: self.bpf.attach_perf_event(
                         ev_type=ev_type, ev_config=ev_config, fn_name=fn_name,
                         sample_period=sample_period, sample_freq=sample_freq, pid=pid, cpu=cpu))

    def ready(self) -> None:
        """Called by tools once everything is attached; ends a dry run here."""
        if settings.current().dry_run:
            for fn in self._autoloaded():
                if fn not in self._loaded:
                    self._loaded.append(fn)
            raise DryRunComplete(self._loaded)

    # -- reading ------------------------------------------------------------

    def __getitem__(self, map_name: str) -> Any:
        if map_name in self._drained:
            return self._drained[map_name]
        return self.bpf[map_name]

    def loss(self) -> LossReport:
        """The loss counters from bpf/pytracekit.h, summed over CPUs."""
        missed = self.recursion_misses()
        try:
            table = self.bpf["ptk_loss"]
        except KeyError:
            return LossReport(missed_events=missed)
        slots = [sum(table[table.Key(i)]) for i in range(len(LOSS_SLOTS))]
        return LossReport(**dict(zip(LOSS_SLOTS, slots)), missed_events=missed)

    def recursion_misses(self) -> int:
        """The events the kernel skipped this module's programs for, because
        a BPF program already ran on that CPU (the programs' bpf_prog_info
        .recursion_misses, Linux 5.12+; which attach types count them:
        docs/losses.md). Each program was loaded by this module, so its count
        starts at 0 with it, as ptk_loss's do. Not the whole loss: a
        perf_event program skipped so is counted nowhere."""
        from ..kernel import bpfsys
        funcs = (self.bpf.funcs or {}) if self.bpf is not None else {}
        stats = (bpfsys.prog_stats(fn.fd) for fn in funcs.values())
        return sum(s[2] for s in stats if s is not None)

    # -- teardown -----------------------------------------------------------

    def detach_perf_events(self) -> None:
        """Stop the perf-event (sampling) programs, keeping the maps: read
        after this, counts and loss counters hold the same samples (closing
        a perf event disables it on its CPU first, after any sample running
        there has ended)."""
        if self.bpf is not None:
            for ev_type, ev_config in list(self.bpf.open_perf_events):
                self.bpf.detach_perf_event(ev_type, ev_config)

    def detach_tracepoints_in_background(self) -> None:
        """Start closing the tracepoints' perf events in a thread, keeping the
        maps: for the end of a run, while the caller reads and names them. The
        last close of a tracepoint's event waits for an RCU grace period (tens of
        ms each on a loaded machine, in C without the GIL), so the waits overlap
        the reading instead of following it. close() waits for the thread."""
        if self.bpf is None or self._detaching is not None or not self.bpf.tracepoint_fds:
            return
        import threading
        closing = list(self.bpf.tracepoint_fds.items())
        thread = threading.Thread(target=_close_perf_event_fds, args=([fd for _, fd in closing],),
                                  name="tracepoints-detach", daemon=True)
        thread.start()
        self._detaching = (thread, closing)

    def _background_detach_done(self) -> None:
        """Wait for detach_tracepoints_in_background's closes, then forget them."""
        if self._detaching is None:
            return
        (thread, closed), self._detaching = self._detaching, None
        thread.join()
        _forget_tracepoints(self.bpf, closed)

    def close(self) -> None:
        # Links first: closing one removes all its uprobes before the program goes.
        while self._links:
            os.close(self._links.pop())
        if self.bpf is not None:
            self._background_detach_done()
            self._store_in_cache()
            with captured_stderr():
                _close_perf_events_concurrently(self.bpf)
                self.bpf.cleanup()
            self.bpf = None
            self.probes.clear()

    def __enter__(self) -> "Program":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def _environ(name: str, value: str) -> Iterator[None]:
    """Set a variable only while BCC compiles: commands pytracekit starts
    later (stat -r) get the environment the user gave it. Only for what BCC
    takes from nowhere else: libbcc reads BCC_KERNEL_SOURCE with getenv() as
    it compiles, and neither BPF() nor libbcc has a parameter for it."""
    saved = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = saved


def _usdt_text(contexts: list[Any]) -> bytes:
    """The USDT argument readers BCC puts before the program text."""
    if not contexts:
        return b""
    import ctypes
    from bcc.libbcc import lib
    array = (ctypes.c_void_p * len(contexts))(*[c.get_context() for c in contexts])
    return lib.bcc_usdt_genargs(array, len(contexts)) or b""


def _fix_uprobe_ref_ctr_offset() -> None:
    """BCC 0.26's Python calls libbcc's bpf_attach_uprobe with 6 of its 7
    arguments (iovisor/bcc#5236): the missing ref_ctr_offset is whatever a
    register holds. The kernel refuses (EINVAL, "ref_ctr_offset mismatch" in
    dmesg) a uprobe at an offset another holds with a different value, e.g.
    a uprobe_multi link, bpftrace or another BCC process. Pass 0, as meant.

    The one change pytracekit makes to BCC: applied where bcc is first
    imported (compile, before any program exists to attach), once per process
    and on purpose for all of it (a correct call is correct for every user of
    libbcc); its only state is the marker on the replacement, so nothing is
    there to reset. A BCC that declares all 7 arguments is left alone."""
    import ctypes
    from bcc import libbcc
    attach = libbcc.lib.bpf_attach_uprobe
    if getattr(attach, "_ptk_fixed", False) or len(getattr(attach, "argtypes", None) or []) != 6:
        return
    attach.argtypes = [*attach.argtypes, ctypes.c_uint32]

    def with_ref_ctr_offset(*args: Any) -> int:
        return attach(*args, 0) if len(args) == 6 else attach(*args)
    with_ref_ctr_offset._ptk_fixed = True  # type: ignore[attr-defined]
    libbcc.lib.bpf_attach_uprobe = with_ref_ctr_offset


def _close_perf_events_concurrently(bpf: Any) -> None:
    """Detach tracepoints and uprobes from several threads before BCC's cleanup.

    The kernel waits for RCU grace periods when the last perf event of a
    tracepoint or uprobe closes; BCC closes them one by one, so 360 syscall
    tracepoints took 32 s to detach here. From 8 threads part of each wait
    overlaps: 13 s (more threads do not help: the rest holds a kernel mutex).
    From two on: a stack tool's three sched tracepoints took 60-100 ms one by one."""
    from bcc.libbcc import lib
    tracepoints = list(bpf.tracepoint_fds.items())
    uprobes = list(bpf.uprobe_fds.items())
    if len(tracepoints) + len(uprobes) < 2:
        return
    _close_perf_event_fds([fd for _, fd in tracepoints + uprobes])
    _forget_tracepoints(bpf, tracepoints)
    for ev_name, _fd in uprobes:
        lib.bpf_detach_uprobe(ev_name)   # removes a tracefs-made event, if BCC made one
        bpf._del_uprobe_fd(ev_name)


def _forget_tracepoints(bpf: Any, closed: list[tuple[bytes, int]]) -> None:
    """After their perf events are closed: each tracepoint detached from BCC's
    side and dropped from its table, so that its cleanup does not close it again."""
    from bcc.libbcc import lib
    for tp, _fd in closed:
        category, event = tp.split(b":", 1)
        lib.bpf_detach_tracepoint(category, event)
        del bpf.tracepoint_fds[tp]


def _close_perf_event_fds(fds: list[int]) -> None:
    """Close perf events from up to 8 threads at once (ctypes calls release
    the GIL), so that their RCU waits overlap."""
    import threading
    from bcc.libbcc import lib

    def close_each(share: list[int]) -> None:
        for fd in share:
            lib.bpf_close_perf_event_fd(fd)
    # plain threads: importing concurrent.futures took the GIL from the reader
    threads = [threading.Thread(target=close_each, args=(fds[i::8],), daemon=True)
               for i in range(min(8, len(fds)))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


# fentry/fexit programs, named for their kernel function (see probes.program_defines).
_TRAMPOLINE_NAME = re.compile(r"\b(k(?:ret)?func__(?:vmlinux__)?(\w+))")
_TRAMPOLINE_MACRO = re.compile(r"\bK(RET)?FUNC_PROBE\(\s*(\w+)")


class BCC_TEXTS:   # pylint: disable=invalid-name  # a table, not a type
    """What only words tell apart, in one place. BCC 0.26 raises a bare
    Exception for every failure, without an errno: the start of its text is
    the only sign of which step failed. Clang's diagnostics and the kernel
    verifier's log (captured from fd 2) are text only too. Where the failed
    step was a system call, its errno decides (BccFailure), never the words."""

    steps = (       # (start of BCC's text, step, the errno its words stand for)
        ("Failed to compile BPF module", "compile", 0),
        ("Failed to load BPF program", "load", 0),          # bpf(BPF_PROG_LOAD): errno
        ("Need super-user privileges to run", "load", errnos.EPERM),   # BCC's words for it
        ("could not determine address of symbol", "symbol", 0),
        ("Failed to attach BPF", "attach", 0),              # perf_event_open, bpf(): errno
    )
    clang_error = ": error: "           # a compiler diagnostic in the log
    verifier_log = "processed "         # the verifier's "processed N insns" line
    stack_limit = "BPF stack limit"     # LLVM's words for a stack over 512 bytes


def _clear_errno() -> None:
    """Before a BCC call: a failure that sets no errno must not show an old one."""
    import ctypes
    ctypes.set_errno(0)


# What the verifier's refusals return from bpf(BPF_PROG_LOAD).
_VERIFIER_ERRNOS = (errnos.EACCES, errnos.EINVAL, errnos.E2BIG)


@dataclass(frozen=True)
class BccFailure:
    """A failure of BCC, classified once, where it was caught."""

    text: str       # BCC's words
    step: str       # "compile", "load", "symbol", "attach" or "" (another failure)
    errno: int      # the failed system call's errno ("load" and "attach"), else 0

    @classmethod
    def of(cls, exc: BaseException) -> "BccFailure":
        """Call in the except clause itself: libbcc is loaded with use_errno, so
        ctypes still holds the errno of the call that failed (any later libbcc
        call, BCC's own cleanup included, would replace it). The program cache
        raises OSError with its errno (progcache.cached_bpf)."""
        import ctypes
        if isinstance(exc, OSError) and exc.errno:
            text, err = str(exc.strerror), exc.errno
        else:
            text, err = str(exc), ctypes.get_errno()
        step, implied = next(((s, e) for start, s, e in BCC_TEXTS.steps
                              if text.startswith(start)), ("", 0))
        err = implied or err
        return cls(text, step, err if step in ("load", "attach") else 0)

    @property
    def said(self) -> str:
        """BCC's words with the errno's name (and its meaning, where BCC's
        words do not end with it: its attach messages never do)."""
        if not self.errno:
            return self.text
        name = errnos.errorcode.get(self.errno, str(self.errno))
        if self.step == "attach":
            return f"{self.text}: {os.strerror(self.errno)} ({name})"
        return f"{self.text} ({name})"


def _trampoline_error(failure: BccFailure, log: str, text: str) -> PytracekitError | None:
    """BCC loads and attaches fentry/fexit programs while compiling: a failure
    there names the kernel function(s), not a compile error."""
    programs = _TRAMPOLINE_NAME.findall(text) + [
        (("kretfunc__" if ret else "kfunc__") + fn, fn) for ret, fn in _TRAMPOLINE_MACRO.findall(text)]
    if (not programs or failure.step == "compile" or BCC_TEXTS.verifier_log in log
            or BCC_TEXTS.clang_error in log):
        return None
    named = [p for p in programs if p[0] in failure.text]   # BCC names the program
    functions = sorted({f for _, f in (named or programs)})
    kinds = sorted({"fexit" if p.startswith("kret") else "fentry" for p, _ in (named or programs)})
    if failure.errno == errnos.EPERM:
        message = "the kernel refused to load it (EPERM) although this is root"
    elif failure.errno:
        message = f"{os.strerror(failure.errno)} ({errnos.errorcode.get(failure.errno, '?')})"
    else:
        message = failure.text
    plural = "s" if len(functions) > 1 else ""
    return PytracekitError(f"cannot attach {'/'.join(kinds)} to kernel function{plural} "
                           f"{', '.join(functions)}: {message}", detail=log)


def _load_error(name: str, failure: BccFailure, log: str, text: str = "") -> PytracekitError:
    trampoline = _trampoline_error(failure, log, text)
    if trampoline is not None:
        return trampoline
    if failure.step == "compile" or BCC_TEXTS.clang_error in log:
        return CompileError(f"BPF program {name} does not compile: {_first_error(log)} "
                            "(--verbose shows the compiler output)", detail=log)
    if failure.step == "load" and failure.errno in _VERIFIER_ERRNOS:
        return VerifierError(f"the kernel verifier rejected {name}: "
                             f"{tail(log, 1) or failure.said} (--verbose shows the log)",
                             detail=tail(log, 30))
    return PytracekitError(f"loading {name} failed: {failure.said}", detail=log)


def _multi_attach_error(kind: str, binary: str, count: int, err: int) -> PytracekitError:
    name = errnos.errorcode.get(err, str(err))
    what = f"cannot attach {count} {kind.split('_')[0]}s to {binary} through one uprobe_multi link"
    if err == errnos.ENOENT:
        return NotFoundError(f"{what}: no such binary ({name})")
    if err in (errnos.EINVAL, errnos.EOPNOTSUPP, 524):    # 524: the kernel's ENOTSUPP
        return NotSupportedError(f"{what}: the kernel refused it ({name}; uprobe_multi needs "
                                 "Linux 6.6+, offsets at instruction boundaries, and no other "
                                 "tracer's uprobe there with a semaphore: see dmesg)")
    return PytracekitError(f"{what}: {name} ({os.strerror(err)})")


def _attach_error(kind: str, target: str, failure: BccFailure, log: str) -> PytracekitError:
    what = f"cannot attach {kind} {target}"
    if failure.step == "symbol":   # uprobes: BCC found no such symbol, or no such file
        binary = target.rsplit(":", 1)[0]
        if "/" in binary and not os.path.exists(binary):
            return NotFoundError(f"{what}: no such binary {binary}", detail=log)
        return NotFoundError(f"{what}: no such function in that binary "
                             "(`pytracekit list -x BINARY` lists them)", detail=log)
    if failure.step == "load" and failure.errno in _VERIFIER_ERRNOS:   # BCC loads at attach
        return VerifierError(f"{what}: {tail(log, 1) or failure.said}", detail=tail(log, 30))
    if failure.step == "attach" and failure.errno == errnos.ENOENT:
        return NotFoundError(f"{what}: {failure.said}", detail=log)
    return PytracekitError(f"{what}: {failure.said}", detail=log)
