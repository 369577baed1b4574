"""The include tree BCC needs, built from the running kernel's BTF and config.

BCC compiles every program against a kernel source tree (BCC_KERNEL_SOURCE).
We give it a tiny synthetic one: a handful of base headers BCC's own helpers
include, plus, per program, a `vmlinux.h` holding only the BTF types that
program names (and their dependencies). Smaller headers compile faster:
~0.2 s instead of ~0.75 s for the whole 133k-line dump.

Everything is cached under one directory per kernel and written atomically,
so tools starting at the same moment never read a half-written file.
"""
from __future__ import annotations

import contextlib
import os
import re
import stat
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterator

from .. import outfile
from ..digest import sha256
from ..errors import NotSupportedError, PytracekitError
from . import btf as btfmod


# Typedefs our base linux/types.h defines; the per-program dump leaves them out.
BASE_TYPEDEFS = (
    "__s8 __u8 __s16 __u16 __s32 __u32 __s64 __u64 s8 u8 s16 u16 s32 u32 s64 u64 "
    "__be16 __le16 __be32 __le32 __be64 __le64 __sum16 __wsum bool size_t ssize_t uintptr_t"
).split()
# Names the base headers define as macros; a BTF enumerator of the same name
# (the kernel's anonymous `enum { false, true }`) must not be emitted.
BASE_MACROS = {"true", "false", "NULL", "PAGE_SIZE", "PAGE_SHIFT"}
# Types the base headers define from BTF (uapi/linux/ptrace.h) or BCC defines itself.
BASE_STRUCTS = ["struct pt_regs"]
_UAPI_BEGIN = b"#ifndef _UAPI__LINUX_BPF_H__"
_UAPI_END = b"#endif /* _UAPI__LINUX_BPF_H__ */"
_UAPI_TYPE = re.compile(r"\b(struct|union|enum)\s+(\w+)\s*\{")

_IDENT = re.compile(r"\b(?:(struct|union|enum)\s+)?([A-Za-z_][A-Za-z0-9_]*)")
_COMMENT = re.compile(r"//[^\n]*|/\*.*?\*/", re.S)
_STRING = re.compile(r'"(?:\\.|[^"\\])*"')


def cache_root() -> Path:
    env = os.environ.get("PYTRACEKIT_CACHE")
    if env:
        return Path(env)
    if os.geteuid() == 0:
        return Path("/var/cache/pytracekit")
    return Path.home() / ".cache" / "pytracekit"


@lru_cache(maxsize=1)
def _generator_digest() -> str:
    """A hash of the code that writes the headers: changing it invalidates the cache."""
    code = Path(__file__).read_bytes() + Path(btfmod.__file__).read_bytes()
    return sha256(code).hexdigest()[:8]


def kernel_key() -> str:
    """Identifies the running kernel and this generator cheaply (no need to hash
    6 MB of BTF on every start)."""
    u = os.uname()
    try:
        size = os.stat(btfmod.VMLINUX_BTF).st_size
    except OSError:
        size = 0
    raw = f"{u.release}|{u.version}|{u.machine}|{size}|{_generator_digest()}"
    return u.release + "-" + sha256(raw.encode()).hexdigest()[:12]


def make_private_dirs(directory: Path) -> None:
    """mkdir -p with mode 0755 whatever the umask says about group/other write."""
    missing = []
    while not directory.exists() and directory != directory.parent:
        missing.append(directory)
        directory = directory.parent
    for d in reversed(missing):
        try:
            os.mkdir(d, 0o755)
        except FileExistsError:
            pass     # another tool made it at the same moment: checked by its user


def _check_trusted(path: Path, *, ancestor: bool = False, what: str = "the header cache") -> None:
    """Refuse a cache path another user owns or could write: its headers are
    compiled into programs that root loads into the kernel. An ancestor may be
    world-writable when sticky (/tmp): others cannot rename our entries."""
    try:
        st = os.lstat(path) if not ancestor else os.stat(path)
    except FileNotFoundError:
        return
    problem = ""
    if st.st_uid not in (0, os.geteuid()):
        problem = f"it is owned by uid {st.st_uid}"
    elif stat.S_ISLNK(st.st_mode):
        problem = "it is a symbolic link"
    elif st.st_mode & 0o022 and not (ancestor and st.st_mode & stat.S_ISVTX):
        problem = f"others can write it (mode {stat.S_IMODE(st.st_mode):o})"
    if problem:
        what, fix = ((f"a directory above {what}", "fix its owner and mode") if ancestor
                     else (what, "remove it (pytracekit rebuilds it)"))
        raise PytracekitError(f"refusing {what} {path}: {problem}; {fix} or set PYTRACEKIT_CACHE "
                              "to a directory only root can write")


def check_cache(*paths: Path, what: str = "the header cache") -> None:
    """Check `paths` (inside the cache) and, for the first, every directory above."""
    if not paths:
        return
    for ancestor in reversed(paths[0].parents):
        _check_trusted(ancestor, ancestor=True, what=what)
    for path in paths:
        _check_trusted(path, what=what)


def ours(st: os.stat_result) -> bool:
    """The caches' trust rule: root's or this user's, and nobody else can write it."""
    return st.st_uid in (0, os.geteuid()) and not st.st_mode & 0o022


def read_trusted(path: Path) -> bytes | None:
    """A cache file's bytes, if it and its directory are ours (`ours`) and it
    is a regular file, not a link (checked on the open file: no race); else
    None, and the caller makes it anew."""
    opened = open_trusted(path)
    if opened is None:
        return None
    with os.fdopen(opened[0], "rb") as f:
        return f.read()


def open_trusted(path: Path) -> tuple[int, int] | None:
    """(an open fd, the size) of a cache file read_trusted would read, for a
    caller that reads it straight where it goes (the caller closes it)."""
    try:
        if not ours(os.stat(path.parent, follow_symlinks=False)):
            return None   # someone else could swap the file in it
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or not ours(st):
        os.close(fd)
        return None
    return fd, st.st_size


def write_cache_file(path: Path, data: bytes, mode: int = 0o644) -> bool:
    """Write a cache file atomically, its directories made as needed; False
    when it cannot be written (a read-only cache: made again next time)."""
    try:
        make_private_dirs(path.parent)
        outfile.write_file(path, data, mode=mode)
    except (OSError, PytracekitError):
        return False
    return True


def write_atomic(path: Path, text: str) -> None:
    make_private_dirs(path.parent)
    outfile.write_file(path, text.encode(), mode=0o644)   # whatever the umask


def read_kernel_config() -> str | None:
    """The kernel config text, from /proc/config.gz or /boot."""
    import gzip   # here: only a new header tree needs it
    try:
        with gzip.open("/proc/config.gz", "rt") as f:
            return f.read()
    except OSError:
        pass
    try:
        return Path(f"/boot/config-{os.uname().release}").read_text()
    except OSError:
        return None


def autoconf_h(config: str) -> str:
    lines = ["/* generated by pytracekit from the kernel config */"]
    for line in config.splitlines():
        m = re.match(r"^(CONFIG_[A-Za-z0-9_]+)=(.*)$", line)
        if not m:
            continue
        name, value = m.groups()
        if value == "y":
            lines.append(f"#define {name} 1")
        elif value == "m":
            lines.append(f"#define {name}_MODULE 1")
        elif value != "n":
            lines.append(f"#define {name} {value}")
    return "\n".join(lines) + "\n"


def version_code(release: str) -> int:
    nums = [int(x) for x in re.findall(r"\d+", release)[:3]] + [0, 0, 0]
    return (nums[0] << 16) + (nums[1] << 8) + min(nums[2], 255)


_TYPES_H = """\
#ifndef _PYTRACEKIT_LINUX_TYPES_H
#define _PYTRACEKIT_LINUX_TYPES_H
/* Fixed-width types BCC's BPF uapi header needs before any BTF type is seen. */
typedef signed char __s8;
typedef unsigned char __u8;
typedef short int __s16;
typedef short unsigned int __u16;
typedef int __s32;
typedef unsigned int __u32;
typedef long long int __s64;
typedef long long unsigned int __u64;
typedef __s8 s8;
typedef __u8 u8;
typedef __s16 s16;
typedef __u16 u16;
typedef __s32 s32;
typedef __u32 u32;
typedef __s64 s64;
typedef __u64 u64;
typedef __u16 __be16;
typedef __u16 __le16;
typedef __u32 __be32;
typedef __u32 __le32;
typedef __u64 __be64;
typedef __u64 __le64;
typedef __u16 __sum16;
typedef __u32 __wsum;
typedef _Bool bool;
typedef long unsigned int size_t;
typedef long int ssize_t;
typedef long unsigned int uintptr_t;
#define __aligned_u64 __u64 __attribute__((aligned(8)))
#define __bitwise
#define __force
#define __user
#define __rcu
#define __percpu
#ifndef NULL
#define NULL ((void *)0)
#endif
#define true 1
#define false 0
#endif
"""

_BPF_COMMON_H = """\
#ifndef _PYTRACEKIT_BPF_COMMON_H
#define _PYTRACEKIT_BPF_COMMON_H
/* Instruction classes and fields of the BPF encoding (uapi constants). */
#define BPF_CLASS(code) ((code) & 0x07)
#define BPF_LD 0x00
#define BPF_LDX 0x01
#define BPF_ST 0x02
#define BPF_STX 0x03
#define BPF_ALU 0x04
#define BPF_JMP 0x05
#define BPF_RET 0x06
#define BPF_MISC 0x07
#define BPF_SIZE(code) ((code) & 0x18)
#define BPF_W 0x00
#define BPF_H 0x08
#define BPF_B 0x10
#define BPF_MODE(code) ((code) & 0xe0)
#define BPF_IMM 0x00
#define BPF_ABS 0x20
#define BPF_IND 0x40
#define BPF_MEM 0x60
#define BPF_LEN 0x80
#define BPF_MSH 0xa0
#define BPF_OP(code) ((code) & 0xf0)
#define BPF_ADD 0x00
#define BPF_SUB 0x10
#define BPF_MUL 0x20
#define BPF_DIV 0x30
#define BPF_OR 0x40
#define BPF_AND 0x50
#define BPF_LSH 0x60
#define BPF_RSH 0x70
#define BPF_NEG 0x80
#define BPF_MOD 0x90
#define BPF_XOR 0xa0
#define BPF_JA 0x00
#define BPF_JEQ 0x10
#define BPF_JGT 0x20
#define BPF_JGE 0x30
#define BPF_JSET 0x40
#define BPF_SRC(code) ((code) & 0x08)
#define BPF_K 0x00
#define BPF_X 0x08
#define BPF_MAXINSNS 4096
#endif
"""

_LOG2_H = """\
#ifndef _PYTRACEKIT_LOG2_H
#define _PYTRACEKIT_LOG2_H
/* A constant expression: BCC's BPF_STACK_TRACE sizes a map with it. */
#define __ptk_rup1(n) ((n) - 1)
#define __ptk_rup2(n) (__ptk_rup1(n) | (__ptk_rup1(n) >> 1))
#define __ptk_rup4(n) (__ptk_rup2(n) | (__ptk_rup2(n) >> 2))
#define __ptk_rup8(n) (__ptk_rup4(n) | (__ptk_rup4(n) >> 4))
#define __ptk_rup16(n) (__ptk_rup8(n) | (__ptk_rup8(n) >> 8))
#define __ptk_rup32(n) (__ptk_rup16(n) | (__ptk_rup16(n) >> 16))
#define roundup_pow_of_two(n) ((unsigned long)(__ptk_rup32((unsigned long)(n)) + 1))
#endif
"""

_PAGE_H = """\
#ifndef _PYTRACEKIT_ASM_PAGE_H
#define _PYTRACEKIT_ASM_PAGE_H
#define PAGE_SHIFT 12
#define PAGE_SIZE (1UL << PAGE_SHIFT)
#endif
"""

_IF_ETHER_H = """\
#ifndef _PYTRACEKIT_IF_ETHER_H
#define _PYTRACEKIT_IF_ETHER_H
#define ETH_ALEN 6
#define ETH_HLEN 14
#define ETH_P_IP 0x0800
#define ETH_P_ARP 0x0806
#define ETH_P_8021Q 0x8100
#define ETH_P_IPV6 0x86DD
#endif
"""


@dataclass(frozen=True)
class IncludeTree:
    """A synthetic kernel source tree for BCC_KERNEL_SOURCE."""

    root: Path          # .../<kernel-key>/
    source: Path        # root/kernel: what BCC_KERNEL_SOURCE points at
    from_btf: bool      # False when falling back to installed kernel headers

    def program_dir(self, digest: str) -> Path:
        return self.root / "programs" / digest


def _libbcc_path() -> Path | None:
    for pattern in ("/usr/lib/*/libbcc.so.0", "/usr/lib64/libbcc.so.0", "/usr/lib/libbcc.so.0",
                    "/usr/local/lib*/libbcc.so.0"):
        for path in sorted(Path("/").glob(pattern.lstrip("/"))):
            return path
    return None


def bcc_uapi_names() -> tuple[set[str], set[str]]:
    """(types, identifiers) BCC's embedded copy of the BPF uapi header defines.

    The kernel's BTF defines the same types; emitting them again would be a
    redefinition, so they are left out of every generated header. Read from
    libbcc itself so it always matches the installed BCC version.
    """
    path = _libbcc_path()
    if path is None:
        return set(), set()
    blob = path.read_bytes()
    start = blob.find(_UAPI_BEGIN)
    end = blob.find(_UAPI_END, start)
    if start < 0 or end < 0:
        return set(), set()
    text = _COMMENT.sub(" ", blob[start:end].decode(errors="replace"))
    types = {f"{kw} {name}" for kw, name in _UAPI_TYPE.findall(text)}
    idents = set(re.findall(r"\b[A-Za-z_]\w*\b", text))
    return types, idents


# With installed kernel headers instead of BTF, a program's "vmlinux.h" pulls in
# the headers that define the types pytracekit's programs use.
INSTALLED_HEADERS_VMLINUX_H = "".join(f"#include <{h}>\n" for h in (
    "uapi/linux/ptrace.h", "linux/sched.h", "linux/fs.h", "linux/mm_types.h",
    "linux/blkdev.h", "linux/blk-mq.h", "linux/skbuff.h", "linux/netdevice.h",
    "net/sock.h", "net/inet_sock.h", "linux/tcp.h", "linux/bpf_perf_event.h",
))


def _installed_headers() -> Path | None:
    build = Path(f"/lib/modules/{os.uname().release}/build")
    return build if (build / "include").is_dir() else None


_TYPEDEF_NAME = re.compile(r"\(\s*\*\s*(\w+)\s*\)|(\w+)\s*(?:\[[^\]]*\])*\s*;\s*$")
_ENUMERATOR = re.compile(r"^\s*(\w+)\s*=", re.M)


def _defined_name(chunk: str) -> str | None:
    """'struct x' / 'typedef-name' for one top-level btf_dump declaration."""
    m = re.match(r"(struct|union|enum)\s+(\w+)\s*\{", chunk)
    if m:
        return f"{m.group(1)} {m.group(2)}"
    if chunk.startswith("typedef"):
        m = _TYPEDEF_NAME.search(chunk)
        if m:
            return m.group(1) or m.group(2)
    return None


def drop_definitions(text: str, types: set[str], enumerators: set[str]) -> str:
    """Leave out definitions that BCC or the base headers already provide.

    Only the definitions themselves go: what they depend on stays, because
    other emitted types may need it too. An anonymous enum goes when one of
    its enumerators is already defined (BCC's uapi header defines BPF_REG_0...).
    """
    kept = []
    for chunk in text.split("\n\n"):
        body = chunk.strip()
        if not body:
            continue
        name = _defined_name(body)
        if name is not None and name in types:
            continue
        if body.startswith("enum {") and any(
                e in enumerators for e in _ENUMERATOR.findall(body)):
            continue
        kept.append(chunk)
    return "\n\n".join(kept) + "\n"


def defined_names(text: str) -> set[str]:
    return {n for n in (_defined_name(c.strip()) for c in text.split("\n\n")) if n}


def _base_files(kbtf: btfmod.KernelBtf, config: str) -> dict[str, str]:
    release = os.uname().release
    pt_regs = drop_definitions(kbtf.dump_c(kbtf.type_ids(BASE_STRUCTS)), set(BASE_TYPEDEFS),
                               BASE_MACROS)
    ptrace_h = ("#ifndef _PYTRACEKIT_PTRACE_H\n#define _PYTRACEKIT_PTRACE_H\n"
                "#include <linux/types.h>\n" + pt_regs + "#endif\n")
    version_h = (f"#define LINUX_VERSION_CODE {version_code(release)}\n"
                 "#define KERNEL_VERSION(a, b, c) (((a) << 16) + ((b) << 8) + ((c) > 255 ? 255 : (c)))\n")
    return {
        "include/generated/autoconf.h": autoconf_h(config),
        "include/linux/kconfig.h": "#include <generated/autoconf.h>\n",
        "include/linux/types.h": _TYPES_H,
        "include/linux/bpf_common.h": _BPF_COMMON_H,
        "include/linux/version.h": version_h,
        "include/generated/uapi/linux/version.h": version_h,
        "include/linux/log2.h": _LOG2_H,
        "arch/x86/include/asm/page.h": _PAGE_H,
        "include/uapi/linux/if_ether.h": _IF_ETHER_H,
        # BCC ships its own copy of the BPF uapi header; point at it.
        "include/uapi/linux/bpf.h": "#include <bcc/bpf.h>\n",
        "include/uapi/linux/if_packet.h": "/* intentionally empty */\n",
        "include/uapi/linux/ptrace.h": ptrace_h,
        # pt_regs and what it embeds: every program header leaves these out.
        "base-types.txt": "\n".join(sorted(defined_names(pt_regs) | set(BASE_TYPEDEFS))) + "\n",
        "arch/x86/include/asm/ptrace.h": "#include <uapi/linux/ptrace.h>\n",
        "include/linux/ptrace.h": "#include <uapi/linux/ptrace.h>\n",
        "include/linux/sched.h": "/* types come from the program's vmlinux.h */\n",
    }


def include_tree() -> IncludeTree:
    """The include tree for the running kernel, built once and cached."""
    cache = _followed_if_ours(cache_root())
    make_private_dirs(cache)
    root = cache / kernel_key()
    source = root / "kernel"
    stamp = source / ".complete"
    check_cache(cache, root, root / "programs", *_tree_paths(source))
    if stamp.exists():
        return IncludeTree(root, source, True)
    if not btfmod.btf_available():
        installed = _installed_headers()
        if installed:
            return IncludeTree(root, installed, False)
        raise NotSupportedError(
            "this kernel has neither BTF (/sys/kernel/btf/vmlinux) nor headers "
            f"(/lib/modules/{os.uname().release}/build): rebuild it with "
            "CONFIG_DEBUG_INFO_BTF=y or install its headers package")
    config = read_kernel_config()
    if config is None:
        raise NotSupportedError(
            "cannot read the kernel config (/proc/config.gz or /boot/config-*): "
            "load the configs module (modprobe configs)")
    # One builder at a time: a tool starting beside it waits, then finds the
    # stamp. Rewriting the files while another tool compiles from the finished
    # tree made that compile fail now and then (KERNEL_VERSION undefined).
    make_private_dirs(root)
    with _build_lock(root):
        if not stamp.exists():
            for rel, text in _base_files(btfmod.vmlinux(), config).items():
                write_atomic(source / rel, text)
            uapi_types, uapi_idents = bcc_uapi_names()
            write_atomic(root / "bcc-uapi-types.txt", "\n".join(sorted(uapi_types)) + "\n")
            write_atomic(root / "bcc-uapi-idents.txt", "\n".join(sorted(uapi_idents)) + "\n")
            write_atomic(stamp, "ok\n")
    return IncludeTree(root, source, True)


@contextlib.contextmanager
def _build_lock(root: Path) -> Iterator[None]:
    """An exclusive flock on the kernel directory itself (no lock file to plant)."""
    import fcntl
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _followed_if_ours(cache: Path) -> Path:
    """The cache root, through a link to it that root (or this user) made
    (/var/cache/pytracekit -> /data/...); what it leads to is checked as usual."""
    try:
        st = os.lstat(cache)
    except OSError:
        return cache
    if stat.S_ISLNK(st.st_mode) and st.st_uid in (0, os.geteuid()):
        return Path(os.path.realpath(cache))
    return cache


def _tree_paths(source: Path) -> list[Path]:
    """Every directory and file of a (possibly half-built) include tree."""
    paths = [source]
    for top, dirs, files in os.walk(source):
        paths += [Path(top, n) for n in dirs + files]
    return paths


def read_names(path: Path) -> set[str]:
    try:
        return set(path.read_text().split("\n")) - {""}
    except OSError:
        return set()


def used_type_names(source: str, kbtf: btfmod.KernelBtf, skip: set[str] = frozenset()) -> list[str]:
    """The BTF type names a C source mentions, in order of first mention."""
    text = _STRING.sub('""', _COMMENT.sub(" ", source))
    seen: dict[str, None] = {}
    for kw, ident in _IDENT.findall(text):
        name = f"{kw} {ident}" if kw else ident
        if name in seen:
            continue
        if name in skip or (not kw and ident in skip):  # `struct tcp_sock` is not the uapi member `tcp_sock`
            continue
        if name in kbtf.by_name or (not kw and ident in kbtf.enumerators):
            seen[name] = None
    base = set(BASE_TYPEDEFS) | set(BASE_STRUCTS)
    return [n for n in seen if n not in base]


_TP_PROBE = re.compile(r"\bTRACEPOINT_PROBE\s*\(\s*(\w+)\s*,\s*(\w+)\s*\)|"
                       r"\btracepoint__(\w+?)__(\w+)\s*\(")


def tracepoint_field_types(source: str) -> str:
    """Field declarations of the tracepoints a program names.

    BCC writes the struct for TRACEPOINT_PROBE(cat, ev) from tracefs's format
    file; its field types (umode_t, pid_t...) must be in the header too.
    """
    from .tracefs import tracepoint
    decls = []
    for m in _TP_PROBE.finditer(source):
        category, event = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
        try:
            decls.extend(f.decl for f in tracepoint(category, event).fields)
        except Exception:  # an unknown tracepoint is reported when attaching
            continue
    return ";\n".join(decls)


def program_header(tree: IncludeTree, source: str) -> Path:
    """The directory holding `vmlinux.h` for one program (cached by source hash;
    the tree's directory is already keyed by kernel and generator)."""
    digest = sha256(source.encode()).hexdigest()[:16]
    directory = tree.program_dir(digest)
    header = directory / "vmlinux.h"
    check_cache(directory, header, tree.root / "bcc-uapi-types.txt", tree.root / "bcc-uapi-idents.txt")
    if header.exists():
        return directory
    if not tree.from_btf:
        write_atomic(header, INSTALLED_HEADERS_VMLINUX_H)
        return directory
    kbtf = btfmod.vmlinux()
    uapi_types = read_names(tree.root / "bcc-uapi-types.txt")
    uapi_idents = read_names(tree.root / "bcc-uapi-idents.txt")
    names = used_type_names(source + "\n" + tracepoint_field_types(source), kbtf,
                            uapi_types | uapi_idents | BASE_MACROS)
    base_types = read_names(tree.source / "base-types.txt")
    body = drop_definitions(kbtf.dump_c(kbtf.type_ids(names)), base_types | uapi_types,
                            uapi_idents | BASE_MACROS)
    text = ("#ifndef __PYTRACEKIT_VMLINUX_H\n#define __PYTRACEKIT_VMLINUX_H\n"
            "/* BTF types this program uses, generated by pytracekit */\n"
            "#include <uapi/linux/ptrace.h>\n"
            + body + "#endif\n")
    write_atomic(header, text)
    return directory
