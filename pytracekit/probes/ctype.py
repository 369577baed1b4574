"""The types an expression yields (CType) and a tracefs field's: apart from
the expression parser (.expr), which re-exports them, so that testing a
tracepoint filter for the kernel (stat) does not import the parser."""
from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class CType:
    """What an expression yields. kind: "int" (a sized integer), "word" (an
    untyped register: a number or a pointer, as arg1 is), "ptr" (a pointer
    that is not a string), "str" (a string: a char pointer or char array)."""

    kind: str
    size: int = 8
    signed: bool = False

    @property
    def c_name(self) -> str:
        if self.kind in ("word", "ptr", "str"):
            return "u64"
        return f"{'s' if self.signed else 'u'}{self.size * 8}"

    @property
    def numeric(self) -> bool:
        return self.kind in ("int", "word", "ptr")

    @property
    def stringish(self) -> bool:
        """Readable as a string: a string, or an untyped word taken as a pointer."""
        return self.kind in ("str", "word", "ptr")


WORD = CType("word")
U64 = CType("int", 8, False)
S64 = CType("int", 8, True)
S32 = CType("int", 4, True)
STR = CType("str")

INT_TYPES: dict[str, CType] = {}
for _names, _size, _signed in (
        (("char", "signed char", "s8", "__s8", "int8_t"), 1, True),
        (("unsigned char", "u8", "__u8", "uint8_t", "bool", "_Bool"), 1, False),
        (("short", "short int", "signed short", "s16", "__s16", "int16_t"), 2, True),
        (("unsigned short", "unsigned short int", "u16", "__u16", "uint16_t", "umode_t"), 2, False),
        (("int", "signed", "signed int", "s32", "__s32", "int32_t", "pid_t", "key_t"), 4, True),
        (("unsigned", "unsigned int", "u32", "__u32", "uint32_t", "uid_t", "gid_t", "mode_t",
          "dev_t", "gfp_t", "socklen_t"), 4, False),
        (("long", "long int", "long long", "long long int", "signed long", "s64", "__s64",
          "int64_t", "ssize_t", "off_t", "loff_t", "time_t", "intptr_t"), 8, True),
        (("unsigned long", "unsigned long int", "unsigned long long", "unsigned long long int",
          "u64", "__u64", "uint64_t", "size_t", "uintptr_t"), 8, False)):
    for _n in _names:
        INT_TYPES[_n] = CType("int", _size, _signed)


def field_type(f) -> CType:
    """The type of a tracefs field (tracefs.Field)."""
    if f.is_string:
        return STR
    ctype = re.sub(r"\b(const|volatile)\b", "", f.ctype).strip()
    if ctype.endswith("*"):
        return CType("ptr")
    if f.array is not None:
        return CType("ptr")
    known = INT_TYPES.get(re.sub(r"\s+", " ", ctype))
    if known is not None and known.size <= f.size:
        return known
    return CType("int", f.size if f.size in (1, 2, 4, 8) else 8, f.signed)
