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
guess. The struct's own definition is found wherever it is in the sources
(an `#if` around a whole struct is not evaluated: the struct asked for is the
one the program uses). tests/test_cstruct.py compares every lookup the package
makes with BCC's (clang's) view of the compiled program.

Parsed layouts are remembered per process. Start-up pays for this (a tool's
first lookup, ~1 ms): the parsing is string operations, not a grammar;
defines are looked up only for the names a struct uses.
"""
from __future__ import annotations

import functools
import re
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
_SIZES = {code: size for code, size in _SCALARS.values()}
_BYTES = {"B", "b", "c"}     # arrays of these are one bytes value ("16s")
_COMMENTS = re.compile(r"/\*.*?\*/|//[^\n]*", re.S)


@functools.lru_cache(maxsize=None)
def _size_tokens() -> re.Pattern:
    """An array size's tokens: numbers (C suffixes dropped), names, operators.
    Compiled on first use: most sizes are a number or one define."""
    return re.compile(r"\s*(?:(0[xX][0-9a-fA-F]+|\d+)[uUlL]*|([A-Za-z_]\w*)|(<<|>>|[-+*/()]))")


class Member:
    """One member: `code` is a struct format code ("" for a struct), `dims`
    its array dimensions, `struct` the nested layout."""

    __slots__ = ("name", "offset", "code", "dims", "struct")

    def __init__(self, name: str, offset: int, code: str, dims: tuple[int, ...],
                 struct: "Layout | None" = None) -> None:
        self.name, self.offset, self.code, self.dims, self.struct = \
            name, offset, code, dims, struct

    @property
    def count(self) -> int:
        n = 1
        for d in self.dims:
            n *= d
        return n

    def __repr__(self) -> str:
        return f"Member({self.name!r}, {self.offset}, {self.code!r}, {self.dims})"


class Layout:
    __slots__ = ("name", "size", "align", "members")

    def __init__(self, name: str, size: int, align: int, members: tuple[Member, ...]) -> None:
        self.name, self.size, self.align, self.members = name, size, align, members

    def __repr__(self) -> str:
        return f"Layout({self.name!r}, size={self.size}, members={self.members})"

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
                size = _SIZES[m.code]
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


@functools.lru_cache(maxsize=None)
def _text(path: Path) -> str:
    with open(path) as f:
        return _COMMENTS.sub(" ", f.read())


def _directives(text: str, word: str) -> list[str]:
    """What follows `#word` on each line that is that directive."""
    out = []
    at = text.find(word)
    while at >= 0:
        line_start = text.rfind("\n", 0, at) + 1
        if text[line_start:at].replace("#", "", 1).strip() == "" and "#" in text[line_start:at]:
            end = text.find("\n", at)
            out.append(text[at + len(word):end if end >= 0 else len(text)])
        at = text.find(word, at + len(word))
    return out


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
        for rest in _directives(_text(path), "include"):
            name = rest.strip()
            if name.startswith('"') and name.endswith('"'):
                header = BPF_DIR / name[1:-1]
                if header.exists():
                    visit(header)
    if first.suffix == ".h":
        visit(BPF_DIR / "pytracekit.h")
    visit(first)
    return tuple(seen)


class _Context:
    def __init__(self, program: str, paths: tuple[Path, ...], defines: Mapping[str, Any]):
        self.program = program
        self.paths = paths
        self.given = dict(defines)
        self.done: dict[str, Layout] = {}

    def _source_define(self, name: str, where: str) -> str:
        """The value the sources #define `name` to; an error when they do not,
        or define it twice differently (under #if branches)."""
        values = set()
        for path in self.paths:
            for rest in _directives(_text(path), "define"):
                parts = rest.split(None, 1)
                if parts and parts[0] == name:
                    values.add(parts[1].strip() if len(parts) > 1 else "")
        if not values:
            raise LayoutError(f"{where}: {name} is not defined in "
                              f"{', '.join(p.name for p in self.paths)}")
        if len(values) > 1:
            raise LayoutError(f"{where}: {name} has two definitions in {self.program}'s "
                              "sources; give its value as a define")
        return values.pop()

    def constant(self, expr: str, where: str, depth: int = 0) -> int:
        """An array size or #if condition: a C integer constant expression of
        numbers, defines and + - * / << >> ( )."""
        expr = expr.strip()
        if expr.isdigit():
            return int(expr)
        if depth > 20:
            raise LayoutError(f"{where}: defines nest too deep in [{expr}]")
        if expr.isidentifier() and expr not in self.given:     # one define, as most are
            return self.constant(self._source_define(expr, where), where, depth + 1)
        python, at = [], 0
        while at < len(expr):
            token = _size_tokens().match(expr, at)
            if not token or token.end() == at:
                raise LayoutError(f"{where}: [{expr}] is not an integer constant the parser "
                                  "knows (numbers, defines, + - * / << >>)")
            number, name, operator = token.groups()
            if number is not None:
                python.append(str(int(number, 0)))
            elif name is not None:
                if name in self.given:
                    value = self.given[name]
                    value = str(int(value)) if isinstance(value, (bool, int)) else str(value)
                else:
                    value = self._source_define(name, where)
                python.append(str(self.constant(value, where, depth + 1)))
            else:
                python.append("//" if operator == "/" else operator)
            at = token.end()
        try:
            return int(eval(" ".join(python), {"__builtins__": {}}))  # tokens checked above
        except (SyntaxError, ZeroDivisionError, TypeError):
            raise LayoutError(f"{where}: [{expr}] is not an integer constant the parser "
                              "knows (numbers, defines, + - * / << >>)") from None

    def struct(self, name: str) -> Layout:
        if name in self.done:
            return self.done[name]
        bodies, nested = [], False
        for path in self.paths:
            text = _text(path)
            at = text.find("struct " + name)
            while at >= 0:
                before = text[at - 1] if at else " "
                after = text[at + 7 + len(name):].lstrip()
                if not (before.isalnum() or before == "_") and after.startswith("{"):
                    open_at = text.index("{", at)
                    close = text.find("}", open_at)
                    if "{" in text[open_at + 1:close]:
                        nested = True
                    elif close >= 0 and text[close + 1:].lstrip().startswith(";"):
                        bodies.append(text[open_at + 1:close])
                at = text.find("struct " + name, at + 1)
        if not bodies:
            why = "holds a nested definition or a union" if nested else "is not defined"
            raise LayoutError(f"struct {name} {why} in "
                              f"{', '.join(p.name for p in self.paths)}")
        if len(set(bodies)) > 1:
            raise LayoutError(f"struct {name} is defined more than once (differently) "
                              f"in {self.program}'s sources")
        layout = self._lay_out(name, bodies[0])
        self.done[name] = layout
        return layout

    def _conditional(self, name: str, body: str) -> str:
        """The body with `#if EXPR` / `#else` / `#endif` resolved (the one form
        of preprocessor line allowed inside a struct: a member that exists
        for some defines, as sslsniff's data[DATA_SIZE])."""
        kept, active = [], [True]      # per open #if: is its current branch taken
        for line in body.splitlines():
            stripped = line.strip()
            if not stripped.startswith("#"):
                if all(active):
                    kept.append(line)
                continue
            word, _, rest = stripped[1:].strip().partition(" ")
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

    def _member(self, name: str, decl: str) -> tuple[str, str, tuple[int, ...]]:
        """(type, name, dims) of one declaration, else an error."""
        where = f"struct {name}: '{decl}'"
        if "," in decl:
            raise LayoutError(f"{where}: declare one member per line")
        head, bracket, tail = decl.partition("[")
        words = head.split()
        dims: list[int] = []
        if bracket:
            for part in ("[" + tail).split("]")[:-1]:
                if not part.strip().startswith("[") or "[" in part.strip()[1:]:
                    words = []          # something after or between the brackets
                    break
                dims.append(self.constant(part.strip()[1:], where))
            if not ("[" + tail).rstrip().endswith("]"):
                words = []
        if (len(words) < 2 or not all(w.isidentifier() for w in words)
                or "__attribute__" in decl):
            raise LayoutError(f"{where}: not a member the parser understands (integers, "
                              "char, arrays of them, known structs)")
        if any(d <= 0 for d in dims):
            raise LayoutError(f"{where}: an array size must be positive")
        return " ".join(words[:-1]), words[-1], tuple(dims)

    def _lay_out(self, name: str, body: str) -> Layout:
        if "#" in body:
            body = self._conditional(name, body)
        offset, align, members = 0, 1, []
        for decl in (d.strip() for d in body.split(";")):
            if not decl:
                continue
            ctype, member, dims = self._member(name, decl)
            nested = None
            if ctype.startswith("struct "):
                nested = self.struct(ctype.split()[1])
                code, size, member_align = "", nested.size, nested.align
            elif ctype in _SCALARS:
                code, size = _SCALARS[ctype]
                member_align = size
            else:
                raise LayoutError(f"struct {name}: '{decl}': unknown type '{ctype}'")
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


@functools.lru_cache(maxsize=256)
def _cached(program: str, name: str, defines: tuple[tuple[str, Any], ...]) -> Layout:
    return _Context(program, sources(program), dict(defines)).struct(name)


def struct_layout(program: str, name: str = "event",
                  defines: Mapping[str, Any] | None = None) -> Layout:
    """The layout of `struct name` as bpf/<program>.bpf.c (with the bpf/
    headers it includes) defines it; `defines` override the sources'
    #defines (as -D does) for array sizes and #if members."""
    return _cached(program, name, tuple(sorted((defines or {}).items())))
