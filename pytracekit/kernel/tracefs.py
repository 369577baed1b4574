"""tracefs: tracepoints and their fields (where tracefs is: mounts.py)."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

from ..errors import NotFoundError
from .mounts import CANDIDATES, tracefs_root   # noqa: F401  # (where it is)


@dataclass(frozen=True)
class Field:
    """One field of a tracepoint's format file."""
    decl: str        # "const char * filename"
    name: str
    ctype: str       # "const char *"
    offset: int
    size: int
    signed: bool
    array: int | None = None   # element count for "char comm[16]"

    @property
    def is_string(self) -> bool:
        return self.ctype.strip().endswith("char") and self.array is not None or \
            self.ctype.startswith("__data_loc char")


@dataclass(frozen=True)
class Tracepoint:
    """A tracepoint and the fields of its format file."""
    category: str
    event: str
    fields: tuple[Field, ...]   # excluding the common_* header fields
    print_fmt: str = ""

    @property
    def name(self) -> str:
        return f"{self.category}:{self.event}"

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        names = ", ".join(f.name for f in self.fields)
        raise NotFoundError(f"tracepoint {self.name} has no field '{name}' (fields: {names})")


    def flag_names(self, field: str) -> list[tuple[int, str]]:
        """The (mask, name) table of `__print_flags(REC->field, ...)` in the print
        fmt, in its order (how ftrace and perf name the bits of that field);
        [] when the format has none. Masks are the kernel's constant expressions
        of shifts, ors, ands and complements, evaluated here."""
        m = re.search(r"__print_flags\(\s*REC->%s\s*,\s*\"[^\"]*\"\s*,(.*?)"
                      r"\{\s*0\s*,\s*\(\(void \*\)0\)\s*\}" % re.escape(field),
                      self.print_fmt)
        table = []
        for expr, name in re.findall(r"\{([^{}]*?),\s*\"(\w+)\"\s*\}", m.group(1) if m else ""):
            expr = re.sub(r"\(\s*(?:gfp_t|unsigned long|unsigned int|int)\s*\)", "", expr)
            expr = re.sub(r"\b(\d+)U?L{0,2}\b", r"\1", expr)
            if not re.fullmatch(r"[\d\s()|&~<>x]*", expr):
                continue    # not a plain constant expression: leave the bit unnamed
            table.append((eval(expr, {"__builtins__": {}}) & (2**64 - 1), name))
        return table


def decode_flags(value: int, table: list[tuple[int, str]], separator: str = "|") -> str:
    """ftrace's __print_flags: each name whose bits are all set, in table
    order, its bits then cleared; what is left in hex; "none" for 0."""
    names = []
    for mask, name in table:
        if mask and value & mask == mask:
            names.append(name)
            value &= ~mask
    if value:
        names.append(hex(value))
    return separator.join(names) or "none"


_FIELD = re.compile(r"field:(?P<decl>[^;]+);\s*offset:(?P<off>\d+);\s*size:(?P<size>\d+);"
                    r"\s*signed:(?P<signed>\d+);")


def parse_format(category: str, event: str, text: str) -> Tracepoint:
    fields = []
    for m in _FIELD.finditer(text):
        decl = m.group("decl").strip()
        array = None
        am = re.match(r"^(.*?)\s*\[(\d*)\]$", decl)
        core = decl
        if am:
            core = am.group(1)
            array = int(am.group(2)) if am.group(2) else 0
        nm = re.match(r"^(.*?)([A-Za-z_]\w*)$", core)
        if not nm:
            continue
        ctype, name = nm.group(1).strip(), nm.group(2)
        if name.startswith("common_"):
            continue
        fields.append(Field(decl, name, ctype, int(m.group("off")), int(m.group("size")),
                            m.group("signed") == "1", array))
    fmt = ""
    pm = re.search(r"^print fmt: (.*)$", text, re.M)
    if pm:
        fmt = pm.group(1)
    return Tracepoint(category, event, tuple(fields), fmt)


def tracepoint(category: str, event: str) -> Tracepoint:
    path = tracefs_root() / "events" / category / event / "format"
    try:
        text = path.read_text()
    except FileNotFoundError:
        hint = suggest_tracepoints(f"{category}:{event}")
        more = f"; similar: {', '.join(hint)}" if hint else \
            "; `pytracekit list 'CATEGORY:*'` lists them"
        raise NotFoundError(f"unknown tracepoint {category}:{event}{more}") from None
    return parse_format(category, event, text)


def tracepoint_id(category: str, event: str) -> int:
    """The id perf_event_open takes as PERF_TYPE_TRACEPOINT's config."""
    try:
        return int((tracefs_root() / "events" / category / event / "id").read_text())
    except FileNotFoundError:
        tracepoint(category, event)   # raises the unknown-tracepoint error with hints
        raise


def list_tracepoints() -> list[str]:
    """All 'category:event' names, sorted."""
    events = tracefs_root() / "events"
    out = []
    for cat in sorted(os.listdir(events)):
        cat_dir = events / cat
        if not cat_dir.is_dir():
            continue
        for ev in sorted(os.listdir(cat_dir)):
            if (cat_dir / ev / "format").exists():
                out.append(f"{cat}:{ev}")
    return out


def suggest_tracepoints(word: str, limit: int = 5) -> list[str]:
    """Tracepoints whose name shares the longest part of `word` (for error hints)."""
    parts = [p for p in re.split(r"[:_]", word.lower()) if len(p) >= 3 and p not in
             ("sys", "enter", "exit", "do", "__x64")]
    if not parts:
        return []
    scored = []
    for name in list_tracepoints():
        event = name.split(":", 1)[1]
        score = sum(1 for p in parts if p in event)
        if score:
            scored.append((-score, len(name), name))
    return [name for _, _, name in sorted(scored)[:limit]]
