"""The layout of a struct a BPF program shares with Python, read from its C.

A record the BPF side writes (a ring buffer event, a map value) is declared
once, as a C struct in `bpf/`; the Python side looks it up by name
(`struct_layout("opensnoop", "event")`) instead of spelling it again. The
parser is small and strict: members are integers (u8..u64, s8..s64, __u*,
__s*, char, short, int, long, long long, their unsigned forms, bool), arrays
of them (sizes: numbers, defines, + - * / << of those) and structs defined in
the same sources; C's alignment rules (LP64, as the BPF target) lay them out.
A member may sit inside `#if EXPR` / `#else` / `#endif`. Anything else
(pointers, unions, bitfields, attributes, other preprocessor lines inside the
struct, a size with two possible values) is an error naming it, never a
guess. Parsed layouts are remembered per process.
"""
from __future__ import annotations

import ast
import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from ..errors import PytracekitError
from ..engine.loader import BPF_DIR


class LayoutError(PytracekitError):
    """A struct the parser does not understand: a bug in bpf/, not bad input."""


# C type -> (struct format code, size); alignment equals size for all of them.
_SCALARS = {
    "u8": ("B", 1), "__u8": ("B", 1), "unsigned char": ("B", 1), "uint8_t": ("B", 1),
    "s8": ("b", 1), "__s8": ("b", 1), "signed char": ("b", 1), "int8_t": ("b", 1),
    "char": ("c", 1), "bool": ("?", 1), "_Bool": ("?", 1),
    "u16": ("H", 2), "__u16": ("H", 2), "unsigned short": ("H", 2), "uint16_t": ("H", 2),
    "s16": ("h", 2), "__s16": ("h", 2), "short": ("h", 2), "int16_t": ("h", 2),
    "u32": ("I", 4), "__u32": ("I", 4), "unsigned int": ("I", 4), "unsigned": ("I", 4),
    "uint32_t": ("I", 4),
    "s32": ("i", 4), "__s32": ("i", 4), "int": ("i", 4), "int32_t": ("i", 4),
    "u64": ("Q", 8), "__u64": ("Q", 8), "unsigned long": ("Q", 8),
    "unsigned long long": ("Q", 8), "uint64_t": ("Q", 8),
    "s64": ("q", 8), "__s64": ("q", 8), "long": ("q", 8), "long long": ("q", 8),
    "int64_t": ("q", 8),
}
_BYTES = {"B", "b", "c"}     # arrays of these are one bytes value ("16s")

_INCLUDE = re.compile(r'^\s*#\s*include\s+"([\w.]+)"', re.M)
_DEFINE = re.compile(r'^[ \t]*#[ \t]*define[ \t]+(\w+)[ \t]+([^\n]*?)[ \t]*(?:/\*.*?\*/)?[ \t]*$',
                     re.M)
_COMMENTS = re.compile(r"/\*.*?\*/|//[^\n]*", re.S)
_MEMBER = re.compile(r"^(?P<type>(?:struct\s+)?[A-Za-z_][\w ]*?)\s+(?P<name>[A-Za-z_]\w*)"
                     r"(?P<dims>(?:\s*\[[^\]]+\])*)$")
_NUMBER_SUFFIX = re.compile(r"\b(0[xX][0-9a-fA-F]+|\d+)[uUlL]+\b")


@dataclass(frozen=True)
class Member:
    """One member: `code` is a struct format code ("" for a struct), `dims`
    its array dimensions, `struct` the nested layout."""

    name: str
    offset: int
    code: str
    dims: tuple[int, ...]
    struct: "Layout | None" = None

    @property
    def count(self) -> int:
        n = 1
        for d in self.dims:
            n *= d
        return n


@dataclass(frozen=True)
class Layout:
    name: str
    size: int
    align: int
    members: tuple[Member, ...]

    def flat(self) -> tuple[tuple[str, str, int], ...]:
        """(name, format, offset) per decoded value, nested structs inlined:
        a byte array is one bytes value ("16s"); other arrays give one value
        per element, named name0, name1, ... (char s[4][64]: s0..s3, "64s")."""
        out: list[tuple[str, str, int]] = []
        for m in self.members:
            if m.struct is not None:
                if m.dims:
                    raise LayoutError(f"struct {self.name}: an array of struct {m.struct.name} "
                                      f"({m.name}) has no flat form")
                out += [(n, f, m.offset + o) for n, f, o in m.struct.flat()]
            elif m.code in _BYTES and m.dims:
                inner = m.dims[-1]
                outer = m.count // inner
                if outer == 1 and len(m.dims) == 1:
                    out.append((m.name, f"{inner}s", m.offset))
                else:
                    out += [(f"{m.name}{i}", f"{inner}s", m.offset + i * inner)
                            for i in range(outer)]
            elif m.dims:
                size = _size(m.code)
                out += [(f"{m.name}{i}", m.code, m.offset + i * size) for i in range(m.count)]
            else:
                out.append((m.name, m.code, m.offset))
        names = [n for n, _, _ in out]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise LayoutError(f"struct {self.name}: member names repeat once nested structs "
                              f"are inlined: {', '.join(dup)}")
        return tuple(out)

    def ctype(self) -> Any:
        """A ctypes.Structure with this layout (nested structs as structures)."""
        import ctypes
        codes = {"B": ctypes.c_uint8, "b": ctypes.c_int8, "c": ctypes.c_char,
                 "?": ctypes.c_bool, "H": ctypes.c_uint16, "h": ctypes.c_int16,
                 "I": ctypes.c_uint32, "i": ctypes.c_int32, "Q": ctypes.c_uint64,
                 "q": ctypes.c_int64}
        fields = []
        for m in self.members:
            kind = m.struct.ctype() if m.struct is not None else codes[m.code]
            for d in reversed(m.dims):
                kind = kind * d
            fields.append((m.name, kind))
        made = type(self.name, (ctypes.Structure,), {"_fields_": fields})
        if ctypes.sizeof(made) != self.size:      # ctypes follows the same C rules
            raise LayoutError(f"struct {self.name}: ctypes lays it out in "
                              f"{ctypes.sizeof(made)} bytes, the parser in {self.size}")
        return made


def _size(code: str) -> int:
    return {"B": 1, "b": 1, "c": 1, "?": 1, "H": 2, "h": 2, "I": 4, "i": 4,
            "Q": 8, "q": 8}[code]


@functools.lru_cache(maxsize=None)
def _text(path: Path) -> str:
    return _COMMENTS.sub(" ", path.read_text())


def sources(program: str) -> tuple[Path, ...]:
    """bpf/<program>.bpf.c and the bpf/ headers it includes, recursively, in
    include order. A header (`program` "ptk_x.h") comes after pytracekit.h,
    which every program includes before it."""
    first = BPF_DIR / (program if "." in program else f"{program}.bpf.c")
    if not first.exists():
        raise LayoutError(f"no BPF source {first}")
    seen: list[Path] = []

    def visit(path: Path) -> None:
        if path in seen:
            return
        seen.append(path)
        for name in _INCLUDE.findall(_text(path)):
            header = BPF_DIR / name
            if header.exists():
                visit(header)
    if first.suffix == ".h":
        visit(BPF_DIR / "pytracekit.h")
    visit(first)
    return tuple(seen)


def _defines(paths: tuple[Path, ...]) -> dict[str, str | None]:
    """Every #define with a value; None for a name defined twice differently
    (under #if branches): it has no single value to lay a struct out with."""
    out: dict[str, str | None] = {}
    for path in paths:
        for name, value in _DEFINE.findall(_text(path)):
            value = value.strip()
            if name in out and out[name] != value:
                out[name] = None
            else:
                out.setdefault(name, value)
    return out


class _Context:
    def __init__(self, program: str, paths: tuple[Path, ...], defines: Mapping[str, Any]):
        self.program = program
        self.paths = paths
        self.source_defines = _defines(paths)
        self.given = dict(defines)
        self.done: dict[str, Layout] = {}

    def constant(self, expr: str, where: str, depth: int = 0) -> int:
        """An array size: a C integer constant expression over defines."""
        if depth > 20:
            raise LayoutError(f"{where}: defines nest too deep in [{expr}]")

        def name_value(match: re.Match) -> str:
            name = match.group(0)
            if name in self.given:
                value = self.given[name]
                return str(int(value)) if isinstance(value, (bool, int)) else f"({value})"
            if name not in self.source_defines:
                raise LayoutError(f"{where}: {name} is not defined in "
                                  f"{', '.join(p.name for p in self.paths)}")
            value = self.source_defines[name]
            if value is None:
                raise LayoutError(f"{where}: {name} has two definitions in {self.program}'s "
                                  "sources; give its value as a define")
            return f"({self.constant(value, where, depth + 1)})"
        text = _NUMBER_SUFFIX.sub(r"\1", expr)
        text = re.sub(r"\b[A-Za-z_]\w*\b", name_value, text)
        try:
            return _evaluate(ast.parse(text.replace("/", "//"), mode="eval").body)
        except (SyntaxError, ValueError, ZeroDivisionError):
            raise LayoutError(f"{where}: array size [{expr}] is not an integer constant "
                              "the parser knows (numbers, defines, + - * / << >>)") from None

    def struct(self, name: str) -> Layout:
        if name in self.done:
            return self.done[name]
        pattern = re.compile(r"\bstruct\s+" + re.escape(name) + r"\s*\{(?P<body>[^{}]*)\}\s*;")
        found = [m for p in self.paths for m in pattern.finditer(_text(p))]
        if not found:
            nested = re.search(r"\bstruct\s+" + re.escape(name) + r"\s*\{", "".join(
                _text(p) for p in self.paths))
            why = "holds a nested definition or a union" if nested else "is not defined"
            raise LayoutError(f"struct {name} {why} in "
                              f"{', '.join(p.name for p in self.paths)}")
        if len({m.group("body") for m in found}) > 1:
            raise LayoutError(f"struct {name} is defined more than once (differently) "
                              f"in {self.program}'s sources")
        layout = self._lay_out(name, found[0].group("body"))
        self.done[name] = layout
        return layout

    def _conditional(self, name: str, body: str) -> str:
        """The body with `#if EXPR` / `#else` / `#endif` resolved (the one form
        of preprocessor line allowed inside a struct: a member that exists
        for some defines, as sslsniff's data[DATA_SIZE])."""
        kept, active = [], [True]      # per open #if: is its current branch taken
        for line in body.splitlines():
            directive = re.match(r"\s*#\s*(\w+)\s*(.*)", line)
            if not directive:
                if all(active):
                    kept.append(line)
                continue
            word, rest = directive.groups()
            where = f"struct {name}: '#{word} {rest}'"
            if word == "if":
                active.append(bool(self.constant(rest, where)))
            elif word == "else" and len(active) > 1:
                active[-1] = not active[-1]
            elif word == "endif" and len(active) > 1:
                active.pop()
            else:
                raise LayoutError(f"{where}: only #if EXPR, #else and #endif may appear "
                                  "inside a struct")
        if len(active) > 1:
            raise LayoutError(f"struct {name}: an #if without its #endif")
        return "\n".join(kept)

    def _lay_out(self, name: str, body: str) -> Layout:
        body = self._conditional(name, body)
        offset, align, members = 0, 1, []
        for decl in (d.strip() for d in body.split(";")):
            if not decl:
                continue
            where = f"struct {name}: '{decl}'"
            if "," in decl:
                raise LayoutError(f"{where}: declare one member per line")
            match = _MEMBER.match(" ".join(decl.split()))
            if not match or "__attribute__" in decl:
                raise LayoutError(f"{where}: not a member the parser understands (integers, "
                                  "char, arrays of them, known structs)")
            ctype, member = " ".join(match.group("type").split()), match.group("name")
            dims = tuple(self.constant(d, where) for d in
                         re.findall(r"\[([^\]]+)\]", match.group("dims")))
            if any(d <= 0 for d in dims):
                raise LayoutError(f"{where}: an array size must be positive")
            nested = None
            if ctype.startswith("struct "):
                nested = self.struct(ctype.split()[1])
                code, size, member_align = "", nested.size, nested.align
            elif ctype in _SCALARS:
                code, size = _SCALARS[ctype]
                member_align = size
            else:
                raise LayoutError(f"{where}: unknown type '{ctype}'")
            offset = -(-offset // member_align) * member_align
            members.append(Member(member, offset, code, dims, nested))
            count = 1
            for d in dims:
                count *= d
            offset += size * count
            align = max(align, member_align)
        if not members:
            raise LayoutError(f"struct {name} has no members")
        return Layout(name, -(-offset // align) * align, align, tuple(members))


_OPS = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b,
        ast.Mult: lambda a, b: a * b, ast.FloorDiv: lambda a, b: a // b,
        ast.LShift: lambda a, b: a << b, ast.RShift: lambda a, b: a >> b}


def _evaluate(node: ast.AST) -> int:
    if isinstance(node, ast.Constant) and isinstance(node.value, int):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        return _OPS[type(node.op)](_evaluate(node.left), _evaluate(node.right))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_evaluate(node.operand)
    raise ValueError(node)


@functools.lru_cache(maxsize=256)
def _cached(program: str, name: str, defines: tuple[tuple[str, Any], ...]) -> Layout:
    paths = sources(program)
    return _Context(program, paths, dict(defines)).struct(name)


def struct_layout(program: str, name: str = "event",
                  defines: Mapping[str, Any] | None = None) -> Layout:
    """The layout of `struct name` as bpf/<program>.bpf.c (with the bpf/
    headers it includes) defines it; `defines` override the sources'
    #defines (as -D does) for array sizes."""
    return _cached(program, name, tuple(sorted((defines or {}).items())))
