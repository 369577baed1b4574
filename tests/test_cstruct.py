"""collect/cstruct: struct layouts read from bpf/ C, checked against C's rules
(ctypes follows the platform ABI), against BCC's own view of every struct the
Python side looks up (clang compiles the real program; root), and for errors
on what the parser does not understand."""
from __future__ import annotations

import ast
import ctypes
import functools
import json
import os
from pathlib import Path

import pytest

from pytracekit.collect import cstruct, stream

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def bpf_dir(tmp_path, monkeypatch):
    """A bpf/ of the test's own; the caches forget the real one."""
    monkeypatch.setattr(cstruct, "BPF_DIR", tmp_path)
    for cache in (cstruct._cached, cstruct._text, stream._fields_of):
        cache.cache_clear()
    yield tmp_path
    for cache in (cstruct._cached, cstruct._text, stream._fields_of):
        cache.cache_clear()


def write(directory: Path, name: str, text: str) -> None:
    (directory / name).write_text(text)


def offsets(ctype) -> list[tuple[str, int, int]]:
    return [(n, getattr(ctype, n).offset, getattr(ctype, n).size) for n, *_ in ctype._fields_]


def test_alignment_padding_and_nesting_follow_c(bpf_dir):
    write(bpf_dir, "ptk_inner.h", """
        #define NAME_LEN (4 * 4)   /* a size from a define */
        struct inner { u64 a; u8 b; };           /* 16 bytes: 7 of tail padding */
    """)
    write(bpf_dir, "t.bpf.c", """
        #include "vmlinux.h"
        #include "ptk_inner.h"
        #ifndef ROWS
        #define ROWS 2
        #endif
        struct event {
            u8 flag;                 // 7 bytes of padding follow
            u64 ts;
            char kind;
            struct inner in;         /* aligned to 8 */
            u8 after;                /* at 40: after the 16-byte inner at 24 */
            s16 small;
            char name[NAME_LEN];
            char rows[ROWS][8];
            u32 vals[3];
            unsigned long long big;
            int last;
        };
    """)
    c = cstruct.struct_layout("t")

    class Inner(ctypes.Structure):
        _fields_ = [("a", ctypes.c_uint64), ("b", ctypes.c_uint8)]

    class Event(ctypes.Structure):
        _fields_ = [("flag", ctypes.c_uint8), ("ts", ctypes.c_uint64), ("kind", ctypes.c_char),
                    ("in", Inner), ("after", ctypes.c_uint8), ("small", ctypes.c_int16),
                    ("name", ctypes.c_char * 16), ("rows", (ctypes.c_char * 8) * 2),
                    ("vals", ctypes.c_uint32 * 3), ("big", ctypes.c_uint64),
                    ("last", ctypes.c_int32)]
    assert offsets(c.ctype()) == offsets(Event)
    assert c.size == ctypes.sizeof(Event) == 104
    assert [(m.name, m.offset) for m in c.members][4] == ("after", 40)

    fields = stream.layout("t")
    assert fields.names == ("flag", "ts", "kind", "a", "b", "after", "small", "name",
                            "rows0", "rows1", "vals0", "vals1", "vals2", "big", "last")
    assert fields.size == 104
    record = bytes(Event(1, 2, b"K", Inner(3, 4), 5, -6, b"nm", ((ctypes.c_char * 8) * 2)(),
                        (ctypes.c_uint32 * 3)(7, 8, 9), 10, -11))
    values = stream.struct.unpack("@" + fields.format, record[:stream.struct.calcsize(
        "@" + fields.format)])
    assert values == (1, 2, b"K", 3, 4, 5, -6, b"nm" + bytes(14), bytes(8), bytes(8),
                      7, 8, 9, 10, -11)
    # A -D value wins over the source's default, as it does for the compiler.
    assert cstruct.struct_layout("t", defines={"ROWS": 3}).size == 112


def test_members_under_if_follow_the_defines(bpf_dir):
    write(bpf_dir, "s.bpf.c", """
        #ifndef DATA_SIZE
        #define DATA_SIZE 0
        #endif
        struct event {
            u64 ts;
            u32 len;
        #if DATA_SIZE
            char data[DATA_SIZE];
        #else
            u32 none;
        #endif
        };
    """)
    assert stream.layout("s").names == ("ts", "len", "none")
    wide = stream.layout("s", defines={"DATA_SIZE": 100})
    assert wide.names == ("ts", "len", "data") and wide.size == 112


@pytest.mark.parametrize("member, complaint", [
    ("void *p;", "not a member the parser understands"),
    ("u32 a, b;", "one member per line"),
    ("u32 flags : 3;", "not a member the parser understands"),
    ("float f;", "unknown type 'float'"),
    ("struct missing m;", "struct missing is not defined"),
    ("char name[UNDEFINED];", "UNDEFINED is not defined"),
    ("char name[TWICE];", "TWICE has two definitions"),
    ("char name[8 ? 1 : 2];", "is not an integer constant"),
    ("char name[sizeof(u64)];", "sizeof is not defined"),
    ("u64 x __attribute__((aligned(16)));", "not a member the parser understands"),
    ("union { u32 a; u64 b; } u;", "nested definition or a union"),
    ("#ifdef X\n u32 a;\n#endif", "only #if EXPR, #else and #endif"),
])
def test_what_it_does_not_understand_is_an_error(bpf_dir, member, complaint):
    write(bpf_dir, "bad.bpf.c", f"""
        #if A
        #define TWICE 8
        #else
        #define TWICE 16
        #endif
        struct event {{
            u64 ts;
            {member}
        }};
    """)
    with pytest.raises(cstruct.LayoutError, match=complaint):
        cstruct.struct_layout("bad")


def test_unknown_struct_and_program(bpf_dir):
    write(bpf_dir, "p.bpf.c", "struct other { u32 a; };\n")
    with pytest.raises(cstruct.LayoutError, match="struct event is not defined in p.bpf.c"):
        cstruct.struct_layout("p")
    with pytest.raises(cstruct.LayoutError, match="no BPF source"):
        cstruct.struct_layout("absent")


def test_inlined_names_must_not_repeat(bpf_dir):
    write(bpf_dir, "d.bpf.c", "struct ep { u16 pad; };\nstruct event { u16 pad; struct ep e; };\n")
    with pytest.raises(cstruct.LayoutError, match="repeat once nested structs are inlined: pad"):
        stream.layout("d")


# -- every struct the package looks up -------------------------------------------

def lookups() -> list[tuple[str, str, dict]]:
    """(program, struct, defines) of every stream.layout/cstruct.struct_layout
    call in the package whose program is a literal, plus the defines given
    literally (others: the sources' defaults)."""
    found = set()
    for path in (ROOT / "pytracekit").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ("layout", "struct_layout")
                    and isinstance(node.func.value, ast.Name)
                    and node.func.value.id in ("stream", "cstruct")):
                continue
            args = [a.value if isinstance(a, ast.Constant) else None for a in node.args]
            if not args or not isinstance(args[0], str):
                continue
            struct_name = args[1] if len(args) > 1 and isinstance(args[1], str) else "event"
            found.add((args[0], struct_name))
    return sorted((p, s, {}) for p, s in found)


# opensnoop.start(program=...) serves statsnoop too; sslsniff's data member
# exists with DATA_SIZE > 0.
LOOKUPS = lookups() + [("opensnoop", "event", {}), ("statsnoop", "event", {}),
                       ("sslsniff", "event", {"DATA_SIZE": 64})]


def test_every_lookup_parses_and_its_names_exist():
    assert len(LOOKUPS) >= 30, LOOKUPS          # the scan finds the tools' lookups
    for program, name, defines in LOOKUPS:
        c = cstruct.struct_layout(program, name, defines)
        assert c.ctype() is not None
    # names the Python side reads by name
    from pytracekit.tools import compactsnoop, funcslower
    assert compactsnoop.FIELDS.names[compactsnoop.PAGES_AT:] == (
        "migrate_scanned", "migrate_taken", "free_scanned", "free_taken", "migrated", "failed")
    assert funcslower.MAX_ARGS == 6


# ctypes twins built from C structs, and the names their modules read them by
TWINS = [("pytracekit.tools.systrace", "Call", {"call", "c"}),
         ("pytracekit.collect.samplelog", "_Record", {"rec"}),
         ("pytracekit.families.python_stacks", "_event_type", {"event"})]   # made when used


@pytest.mark.parametrize("module, type_name, variables", TWINS)
def test_the_members_a_module_reads_exist(module, type_name, variables):
    """Every `var.member` (and `var.nested.member`) the module reads from a
    variable holding the struct names a member of the C struct."""
    import importlib
    mod = importlib.import_module(module)
    ctype = getattr(mod, type_name)
    if not isinstance(ctype, type):   # a function that makes it
        ctype = ctype()
    read = []
    for node in ast.walk(ast.parse(Path(mod.__file__).read_text())):
        if not isinstance(node, ast.Attribute):
            continue
        if isinstance(node.value, ast.Name) and node.value.id in variables:
            read.append((ctype, node.attr))
        elif (isinstance(node.value, ast.Attribute) and isinstance(node.value.value, ast.Name)
              and node.value.value.id in variables):
            inner = dict(ctype._fields_).get(node.value.attr)
            if inner is not None and issubclass(inner, ctypes.Structure):
                read.append((inner, node.attr))
    assert read, f"{module} reads no member of {type_name} through {variables}"
    missing = [f"{t.__name__}.{name}" for t, name in read if name not in dict(t._fields_)]
    assert missing == []


def _bcc_view(program: str, name: str, defines: dict):
    """BCC's ctypes type for `struct name` and clang's sizeof, as clang
    compiles the real program:
    its text as the loader builds it, plus an array map of that struct, compiled
    by libbcc (nothing is loaded or attached)."""
    import bcc
    from bcc.libbcc import lib
    from pytracekit.engine import loader
    from pytracekit.kernel import headers, tracefs

    if program.endswith(".h"):
        source = f'#include "vmlinux.h"\n#include "pytracekit.h"\n#include "{program}"\n'
    else:
        source = loader.read_source(program)
    source = stream._PASTED_INCLUDE.sub(
        lambda m: (loader.BPF_DIR / m.group(1)).read_text(), source)
    text = (loader.defines_text(defines) + loader.expand_source(source)
            + f"\nBPF_ARRAY(ptk_layout_view, struct {name}, 1);\n")
    tracefs.tracefs_root()
    tree = headers.include_tree()
    header_dir = headers.program_header(tree, text)
    text = loader._INCLUDE_VMLINUX.sub(f'#include "{header_dir}/vmlinux.h"', text)
    cflags = [f"-I{header_dir}", "-Wno-macro-redefined", "-Wno-unused-function"]
    array = (ctypes.c_char_p * len(cflags))(*[f.encode() for f in cflags])
    os.environ["BCC_KERNEL_SOURCE"] = str(tree.source)
    cwd = os.getcwd()
    os.chdir(header_dir)
    try:
        module = lib.bpf_module_create_c_from_string(text.encode(), 0, array, len(cflags),
                                                     True, None)
    finally:
        os.chdir(cwd)
    assert module, f"{program}: BCC did not compile it"
    try:
        return (_decode(json.loads(lib.bpf_table_leaf_desc(module, b"ptk_layout_view"))),
                _leaf_size(lib._name)(module, b"ptk_layout_view"))
    finally:
        lib.bpf_module_destroy(module)


@functools.lru_cache(maxsize=None)
def _leaf_size(library: str):
    """libbcc's bpf_table_leaf_size (clang's sizeof), which bcc's Python module
    does not declare: through a handle of our own, typed here."""
    size = ctypes.CDLL(library).bpf_table_leaf_size
    size.restype, size.argtypes = ctypes.c_size_t, [ctypes.c_void_p, ctypes.c_char_p]
    return size


def _decode(desc):
    """BCC's type description (clang's names, types and array sizes) as ctypes,
    as bcc.BPF._decode_table_type makes it, but with every dimension of an
    array (BCC keeps only the first: char s[4][128] would be 4 bytes)."""
    import bcc
    if isinstance(desc, str):
        return bcc.BPF.str2ctype[desc]
    fields = []
    for member in desc[1]:
        kind = _decode(member[1])
        if len(member) == 3:
            assert isinstance(member[2], list), member        # no bitfields, no unions
            for d in reversed(member[2]):
                kind = kind * d
        fields.append((member[0], kind))
    assert desc[2] in ("struct", "struct_packed"), desc
    attrs = {"_fields_": fields, **({"_pack_": 1} if desc[2] == "struct_packed" else {})}
    return type(desc[0], (ctypes.Structure,), attrs)


def _scalars(ctype, base=0, prefix=""):
    """(path, offset, size, signed) of every member in a ctypes type, nested
    structs' members too (signed None: char, bool or a struct)."""
    out = []
    for n, kind, *_ in ctype._fields_:
        if n.startswith("__pad_"):      # BCC spells the compiler's padding out
            continue
        field = getattr(ctype, n)
        while issubclass(kind, ctypes.Array):
            kind = kind._type_
        if issubclass(kind, ctypes.Structure):
            out.append((prefix + n, base + field.offset, field.size, None))
            out += _scalars(kind, base + field.offset, prefix + n + ".")
        else:
            signed = kind(-1).value == -1 if kind not in (ctypes.c_char, ctypes.c_bool) else None
            out.append((prefix + n, base + field.offset, field.size, signed))
    return out


@pytest.mark.root
def test_layouts_match_bccs_view_of_the_compiled_programs():
    """BCC (clang) and the parser agree on each struct's size and on every
    member's name, offset, size and signedness."""
    from pytracekit.families import python_stacks
    # what a header needs to compile (its struct is under #if SAMPLE_LOG)
    compile_defines = {"ptk_python.h": python_stacks.defines(), "ptk_sample_log.h": {"SAMPLE_LOG": 1},
                       "ptk_first_samples.h": {"FIRST_SAMPLES": 1}}
    for program, name, defines in LOOKUPS:
        ours = cstruct.struct_layout(program, name, defines)
        theirs, size = _bcc_view(program, name, {**compile_defines.get(program, {}), **defines})
        assert size == ours.size, (program, name)
        expected = _scalars(ours.ctype())
        # BCC describes char s[4][128] as char s[4]: such a member (always the
        # last here, so no offset after it depends on BCC's error) is compared
        # as BCC sees it; its real size is in sizeof, checked above.
        for i, m in enumerate(ours.members):
            if len(m.dims) > 1:
                assert i == len(ours.members) - 1, (program, name, m.name)
                path, offset, whole, signed = expected[-1]
                expected[-1] = (path, offset, whole // (m.count // m.dims[0]), signed)
        assert _scalars(theirs) == expected, (program, name)
