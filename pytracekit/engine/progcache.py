"""A cache of compiled BPF programs: a repeated run loads without clang.

The first run compiles through BCC as always; when its Program closes, the
instructions BCC produced for each function, and what recreates each map
(type, sizes, flags, the key/leaf type descriptions BCC gives Python), are
written next to the program's BTF header (`programs/<source hash>/`, inside
the per-kernel directory of the header cache, so the same trust checks
apply). A later run with the same key creates the maps with bpf(2), points
each map reference of the instructions (ld_imm64, src_reg
BPF_PSEUDO_MAP_FD) at the new map fd, and loads the functions itself. The
object it hands the tools is a `bcc.BPF` whose module is not a compiled one
(CachedBPF below): attaching, tables, ring and perf buffers are BCC's own code.

Key: the full program text (USDT argument readers included), the compiler
flags, BCC's version, the possible CPUs (perf arrays are sized by them) and a
format version; the directory adds the kernel (release, version, BTF size)
and the header generator. A missing, corrupt, untrusted or unloadable entry
means compiling, never an error. PYTRACEKIT_NO_PROGRAM_CACHE=1 turns it off.
Bounded (MAX_PROGRAMS per kernel directory): storing an entry evicts the
least recently used program directories (their mtime: refreshed by every
compile or hit) that no run holds (ProgramDir).
"""
from __future__ import annotations

import base64
import ctypes
import fcntl
import json
import os
import stat
import struct
from pathlib import Path
from typing import Any

from . import settings
from .bpfloop import bcc_prog_name

FORMAT = 1
DISABLE_ENV = "PYTRACEKIT_NO_PROGRAM_CACHE"
# program directories (a header and its entries, ~5-100 KB each, ~31 KB on
# average: ~32 MB at most). 256 were too few for someone who runs many tools: a
# run of the test suite went through them twice, compiling again what it had
# compiled minutes before.
MAX_PROGRAMS = 1024
EVICTIONS_PER_STORE = 16    # a store's work stays small; a cache far over the bound shrinks in steps
BPF_PSEUDO_MAP_FD = 1
_LD_IMM64 = 0x18
_CALL = 0x85
# Programs whose load needs what only a compiled module has: fentry/fexit/LSM
# programs are loaded against a kernel BTF id while BCC compiles; map BTF
# (spin locks, timers, kptrs) and pinned or shared tables are not recreated.
_UNCACHEABLE_WORDS = ("kfunc__", "kretfunc__", "lsm__", "KFUNC_PROBE", "KRETFUNC_PROBE",
                      "LSM_PROBE", "bpf_spin_lock", "bpf_timer", "__kptr", "PINNED",
                      "BPF_TABLE_SHARED", "BPF_TABLE_PUBLIC", "extern", "OF_MAPS")
# Map types recreated here: not map-in-map (it needs an inner map fd).
_MAP_IN_MAP = (12, 13)     # BPF_MAP_TYPE_ARRAY_OF_MAPS, HASH_OF_MAPS


class Unusable(Exception):
    """This entry (or program) cannot be cached or loaded from the cache."""


def enabled() -> bool:
    """Off by PYTRACEKIT_NO_PROGRAM_CACHE=1, and for --dry-run (it checks that the
    program compiles) and --ebpf."""
    now = settings.current()
    return os.environ.get(DISABLE_ENV, "") in ("", "0") and not (now.ebpf or now.dry_run)


def cacheable(text: str) -> bool:
    return not any(word in text for word in _UNCACHEABLE_WORDS)


def note(message: str) -> None:
    if settings.current().verbose:
        import sys
        sys.stderr.write(f"pytracekit: program cache: {message}\n")


def key(text: str, cflags: list[str], usdt_text: bytes, bcc_version: str) -> str:
    try:
        cpus = Path("/sys/devices/system/cpu/possible").read_text().strip()
    except OSError:
        cpus = str(os.cpu_count())
    parts = [f"format {FORMAT}", bcc_version, cpus, "\0".join(cflags)]
    for flag in cflags:    # a file forced in with -include is part of the text
        if flag.endswith(".h") and os.path.isfile(flag):
            parts.append(Path(flag).read_text())
    from ..digest import sha256
    digest = sha256("\n\0".join(parts).encode())
    digest.update(usdt_text)
    digest.update(text.encode())
    return digest.hexdigest()


def entry_path(header_dir: Path, cache_key: str) -> Path:
    return header_dir / f"compiled-{cache_key[:32]}.json"


def lookup(path: Path, cache_key: str) -> dict[str, Any] | None:
    """The stored entry, or None (absent, untrusted, corrupt, or another key)."""
    from ..errors import PytracekitError
    from ..kernel import headers
    if not path.exists():
        return None
    try:
        headers.check_cache(path, what="the program cache")
    except PytracekitError as exc:
        note(f"ignoring an entry: {exc}")
        return None
    try:
        entry = json.loads(path.read_bytes())
        if entry.get("format") != FORMAT or entry.get("key") != cache_key:
            raise ValueError("another key or format")
    except (OSError, ValueError, AttributeError) as exc:
        note(f"ignoring unreadable entry {path}: {exc}")
        return None
    return entry


# -- recording what BCC compiled --------------------------------------------------


def _declare(lib: Any) -> None:
    u64, vp, cp = ctypes.c_ulonglong, ctypes.c_void_p, ctypes.c_char_p
    for name, restype, argtypes in (
            ("bpf_num_tables", ctypes.c_size_t, [vp]),
            ("bpf_table_name", cp, [vp, u64]),
            ("bpf_table_fd_id", ctypes.c_int, [vp, u64]),
            ("bpf_table_key_size_id", ctypes.c_size_t, [vp, u64]),
            ("bpf_table_leaf_size_id", ctypes.c_size_t, [vp, u64]),
            ("bpf_table_key_desc_id", cp, [vp, u64]),
            ("bpf_table_leaf_desc_id", cp, [vp, u64])):
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = restype, argtypes


def record(bpf: Any, cache_key: str, loads: list[tuple[str, int, int]]) -> dict[str, Any]:
    """What a compiled `bcc.BPF` needs to be recreated; Unusable if anything
    in it is beyond what CachedBPF reproduces."""
    from bcc.libbcc import lib
    _declare(lib)
    module = bpf.module
    maps = []
    for i in range(lib.bpf_num_tables(module)):
        desc = (lib.bpf_table_key_desc_id(module, i), lib.bpf_table_leaf_desc_id(module, i))
        maps.append(dict(
            name=lib.bpf_table_name(module, i).decode(), fd=lib.bpf_table_fd_id(module, i),
            type=lib.bpf_table_type_id(module, i), flags=lib.bpf_table_flags_id(module, i),
            key_size=lib.bpf_table_key_size_id(module, i),
            leaf_size=lib.bpf_table_leaf_size_id(module, i),
            max_entries=lib.bpf_table_max_entries_id(module, i),
            key_desc=(desc[0] or b"").decode(), leaf_desc=(desc[1] or b"").decode()))
        if maps[-1]["fd"] < 0 or maps[-1]["type"] in _MAP_IN_MAP:
            raise Unusable(f"map {maps[-1]['name']} cannot be recreated")
    map_fds = {m["fd"] for m in maps}
    functions = {}
    for i in range(lib.bpf_num_functions(module)):
        name = lib.bpf_function_name(module, i)
        insns = bpf.dump_func(name)
        _check_insns(insns, map_fds)
        functions[name.decode()] = base64.b64encode(insns).decode()
    return dict(format=FORMAT, key=cache_key, functions=functions, maps=maps,
                license=(lib.bpf_module_license(module) or b"").decode(),
                kern_version=lib.bpf_module_kern_version(module), loads=loads)


def _check_insns(insns: bytes, map_fds: set[int]) -> None:
    """Only map fds may be embedded: BTF ids, map values and kfunc calls
    would need a relocation this cache does not do."""
    if len(insns) % 8:
        raise Unusable("truncated instructions")
    for at in range(0, len(insns), 8):
        code, regs, _off, imm = struct.unpack_from("<BBhi", insns, at)
        src = regs >> 4
        if code == _LD_IMM64 and src not in (0, BPF_PSEUDO_MAP_FD):
            raise Unusable(f"ld_imm64 with src_reg {src}")
        if code == _LD_IMM64 and src == BPF_PSEUDO_MAP_FD and imm not in map_fds:
            raise Unusable(f"a reference to unknown map fd {imm}")
        if code == _CALL and src not in (0, 1):     # 1: a call to a subprogram
            raise Unusable(f"call with src_reg {src}")


def store(path: Path, entry: dict[str, Any]) -> None:
    from ..kernel import headers
    headers.write_atomic(path, json.dumps(entry, separators=(",", ":")))
    prune(path.parent.parent, keep=path.parent)


# -- the bound: least recently used program directories go --------------------------


def _ours(st: os.stat_result) -> bool:
    """The cache's trust rule (headers.check_cache): root's or this user's, and
    nobody else can write it."""
    from ..kernel.headers import ours
    return ours(st)


class ProgramDir:
    """A program's directory (its BTF header, its entries) while a run compiles
    from it and reads its entry: a shared flock, so prune() (which removes only
    what it can lock exclusively) leaves it. `make()` (headers.program_header)
    makes the directory and header when missing, also when pruning removed
    them before the lock was taken. Every use refreshes its mtime: prune's
    recency. A context manager: the lock ends with the block."""

    def __init__(self, make: Any) -> None:
        self.fd = -1
        for _attempt in range(3):
            self.path: Path = make()
            try:
                fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW |
                             os.O_CLOEXEC)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_SH)
                if os.path.samestat(os.fstat(fd), os.stat(self.path, follow_symlinks=False)) \
                        and (self.path / "vmlinux.h").exists():
                    self.fd = fd
                    try:
                        os.utime(fd)
                    except OSError:   # (not ours to touch: it is still held)
                        pass
                    return
            except OSError:
                pass
            os.close(fd)
        note(f"{self.path} is not held")   # pruned again and again: compile unheld

    def __enter__(self) -> "ProgramDir":
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def prune(programs: Path, keep: Path | None = None,
          max_programs: int | None = None) -> list[Path]:
    """Remove the least recently used program directories of `programs` (a
    kernel directory's programs/: each a BTF header and its entries) until at
    most `max_programs` (MAX_PROGRAMS) are left, EVICTIONS_PER_STORE at most;
    `keep` (the one just stored into) stays. At store time, after a compile:
    one scan of `programs`, a stat per directory. A directory a run holds (ProgramDir: compiling from
    it, reading its entry) is skipped; a reader never sees half an entry
    (written by rename, read in one read). Only this user's or root's own
    directories and files count and go: a link, or what another user owns or
    can write, is left alone."""
    from ..errors import PytracekitError
    from ..kernel import headers
    limit = MAX_PROGRAMS if max_programs is None else max_programs
    try:
        headers.check_cache(programs, what="the program cache")
        with os.scandir(programs) as listing:
            found = sorted((st.st_mtime, d.name) for d in listing
                           if d.is_dir(follow_symlinks=False)
                           and _ours(st := d.stat(follow_symlinks=False)))
    except (OSError, PytracekitError) as exc:
        note(f"not pruned: {exc}")
        return []
    removed = []
    count = len(found)
    for _, name in found:                               # oldest first
        if count <= limit:
            break
        if len(removed) >= EVICTIONS_PER_STORE:
            break
        if keep is not None and name == keep.name:
            continue
        if _remove_unused(programs / name):
            removed.append(programs / name)
            count -= 1
    if removed:
        note(f"evicted {len(removed)} least recently used programs")
    return removed


def _remove_unused(directory: Path) -> bool:
    """Remove a program directory nobody holds, holding only our own files."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        if not _ours(os.fstat(fd)):
            return False
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)   # BlockingIOError: in use
        names = os.listdir(fd)
        for name in names:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            if not (stat.S_ISREG(st.st_mode) and _ours(st)):
                return False
        for name in names:
            os.unlink(name, dir_fd=fd)
        os.rmdir(directory)       # a store's file may have come meanwhile: then it stays
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def _patched(insns: bytes, fd_map: dict[int, int]) -> bytes:
    out = bytearray(insns)
    at = 0
    while at < len(out):
        code, regs = out[at], out[at + 1]
        if code == _LD_IMM64:
            if regs >> 4 == BPF_PSEUDO_MAP_FD:
                old = struct.unpack_from("<i", out, at + 4)[0]
                struct.pack_into("<i", out, at + 4, fd_map[old])
            at += 16
        else:
            at += 8
    return bytes(out)


# -- loading from an entry ---------------------------------------------------------


def cached_bpf(entry: dict[str, Any], usdt_contexts: list[Any]) -> Any:
    """A bcc.BPF over the entry's programs and maps, attached as BCC's
    constructor would (USDT uprobes, TRACEPOINT_PROBE functions); Unusable
    (everything made is closed again) if the kernel refuses any of it."""
    import bcc

    class CachedBPF(bcc.BPF):
        """BCC's BPF with maps and functions from the cache, not a module.
        BCC's table classes read a map's type, flags and size through libbcc
        from the module when built; the tables are built here from the entry."""

        def __init__(self) -> None:   # pylint: disable=super-init-not-called
            for name in ("kprobe_fds", "uprobe_fds", "tracepoint_fds", "raw_tracepoint_fds",
                         "kfunc_entry_fds", "kfunc_exit_fds", "lsm_fds", "perf_buffers",
                         "open_perf_events", "funcs", "tables"):
                setattr(self, name, {})
            self._ringbuf_manager = None
            self.tracefile = None
            self.debug = 0
            self.module = None
            self._maps: dict[bytes, dict[str, Any]] = {}
            self._map_fds: list[int] = []
            self._insns: dict[bytes, bytes] = {}
            self._preloaded: dict[tuple[bytes, int, int], Any] = {}
            import atexit
            atexit.register(self.cleanup)

        def load_func(self, func_name: Any, prog_type: int, device: Any = None,
                      attach_type: int = -1) -> Any:
            func_name = func_name.encode() if isinstance(func_name, str) else func_name
            if func_name in self.funcs:
                return self.funcs[func_name]
            if func_name not in self._insns:
                raise Exception(f"Unknown program {func_name!r}")
            preloaded = self._preloaded.pop((func_name, prog_type, attach_type), None)
            if preloaded is not None:
                self.funcs[func_name] = preloaded
                return preloaded
            from ..kernel import bpfsys
            from . import bpfloop
            linked = bpfloop.linked_functions(self.dump_func, list(self._insns), func_name)
            if linked is not None:
                fd, err, log = bpfloop.prog_load(prog_type, bcc_prog_name(func_name), linked,
                                                 self._license, self._kern_version, attach_type)
            else:
                fd, err, log = bpfsys.prog_load(prog_type, bcc_prog_name(func_name),
                                                self._insns[func_name], self._license,
                                                self._kern_version, attach_type)
            if fd < 0:
                if log:   # to fd 2, where libbcc writes it: the loader captures it there
                    os.write(2, log.encode(errors="replace"))
                # BCC's words, and the errno the loader classifies by (loader.BccFailure)
                raise OSError(err, f"Failed to load BPF program {func_name!r}: {os.strerror(err)}")
            fn = bcc.BPF.Function(self, func_name, fd)
            self.funcs[func_name] = fn
            return fn

        def dump_func(self, func_name: Any) -> bytes:
            func_name = func_name.encode() if isinstance(func_name, str) else func_name
            return self._insns[func_name]

        def get_table(self, name: Any, keytype: Any = None, leaftype: Any = None,
                      reducer: Any = None) -> Any:
            name = name.encode() if isinstance(name, str) else name
            if name not in self._maps:
                raise KeyError(name)
            m = self._maps[name]
            queue_stack = m["type"] in (bcc.BPF_MAP_TYPE_QUEUE, bcc.BPF_MAP_TYPE_STACK)
            if keytype is None and not queue_stack:
                keytype = bcc.BPF._decode_table_type(json.loads(m["key_desc"]))
            if leaftype is None:
                leaftype = bcc.BPF._decode_table_type(json.loads(m["leaf_desc"]))
            with _table_facts(m):
                return bcc.table.Table(self, m["id"], m["new_fd"], keytype, leaftype, name,
                                       reducer=reducer)

        def _trace_autoload(self) -> None:
            for func_name in self._insns:
                if func_name.startswith(b"tracepoint__"):
                    fn = self.load_func(func_name, bcc.BPF.TRACEPOINT)
                    tp = fn.name[len(b"tracepoint__"):].replace(b"__", b":")
                    self.attach_tracepoint(tp=tp, fn_name=fn.name)
                elif func_name.startswith(b"raw_tracepoint__"):
                    fn = self.load_func(func_name, bcc.BPF.RAW_TRACEPOINT)
                    self.attach_raw_tracepoint(tp=fn.name[len(b"raw_tracepoint__"):],
                                               fn_name=fn.name)
                elif func_name.startswith((b"kprobe__", b"kretprobe__")):
                    raise Unusable("kprobe__ functions are attached by BCC's constructor")

        def preload(self, func_name: bytes, prog_type: int, attach_type: int) -> None:
            """Load a function as the run that stored the entry did, before
            anything attaches (a refusal then means compiling instead); the
            tool's own load_func takes it. Kept out of `funcs` until then:
            `funcs` says what was loaded for whom, as with BCC."""
            fn = self.load_func(func_name, prog_type, attach_type=attach_type)
            del self.funcs[func_name]
            self._preloaded[(func_name, prog_type, attach_type)] = fn

        def close(self) -> None:
            for fn in self._preloaded.values():
                os.close(fn.fd)
            self._preloaded.clear()
            for name, fn in list(self.funcs.items()):
                os.close(fn.fd)
                del self.funcs[name]
            while self._map_fds:
                os.close(self._map_fds.pop())

    bpf = CachedBPF()
    try:
        _fill(bpf, entry)
        for name, prog_type, attach_type in entry["loads"]:   # the verifier, before attaching
            bpf.preload(name.encode(), prog_type, attach_type)
        for usdt in usdt_contexts:
            usdt.attach_uprobes(bpf, False)
        bpf._trace_autoload()
    except Exception as exc:
        try:
            bpf.cleanup()
        except Exception:   # pylint: disable=broad-except
            pass            # compiling next reports what is wrong, if anything
        if isinstance(exc, Unusable):
            raise
        raise Unusable(str(exc)) from exc
    return bpf


def _fill(bpf: Any, entry: dict[str, Any]) -> None:
    from ..kernel import bpfsys
    fd_map = {}
    for map_id, m in enumerate(entry["maps"]):
        fd, err = bpfsys.map_create(m["type"], m["key_size"], m["leaf_size"], m["max_entries"],
                                    m["flags"], m["name"])
        if fd < 0:
            raise Unusable(f"creating map {m['name']}: {os.strerror(err)}")
        bpf._map_fds.append(fd)
        fd_map[m["fd"]] = fd
        bpf._maps[m["name"].encode()] = dict(m, id=map_id, new_fd=fd)
    for name, text in entry["functions"].items():
        bpf._insns[name.encode()] = _patched(base64.b64decode(text), fd_map)
    bpf._license = entry["license"].encode()
    bpf._kern_version = entry["kern_version"]


class _table_facts:
    """While BCC builds a table object, libbcc's per-map queries (type, flags,
    max entries), which take a compiled module, answer from the entry."""

    def __init__(self, facts: dict[str, Any]) -> None:
        self.facts = facts

    def __enter__(self) -> None:
        import bcc.table
        self.saved = bcc.table.lib
        bcc.table.lib = _FactsLib(self.saved, self.facts)

    def __exit__(self, *exc: object) -> None:
        import bcc.table
        bcc.table.lib = self.saved


class _FactsLib:
    def __init__(self, lib: Any, facts: dict[str, Any]) -> None:
        self._lib, self._facts = lib, facts

    def bpf_table_type_id(self, _module: Any, _map_id: int) -> int:
        return self._facts["type"]

    def bpf_table_flags_id(self, _module: Any, _map_id: int) -> int:
        return self._facts["flags"]

    def bpf_table_max_entries_id(self, _module: Any, _map_id: int) -> int:
        return self._facts["max_entries"]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._lib, name)

