"""Tracepoint filters (perf's --filter, ftrace syntax) compiled to BPF C.

    EXPR := TERM (('&&' | '||') TERM)* ;  TERM := '!' TERM | '(' EXPR ')' | FIELD OP VALUE
    OP   := == != < <= > >= & (integers) ; == != ~ (strings; ~ "prefix*" matches a prefix)

Fields are the tracepoint's own (tracefs format): integers are read from the
tracepoint record at their offset; strings from the record (char arrays,
__data_loc) or through the pointer (syscall arguments point to user memory).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import SpecError
from .ctype import field_type
from ..kernel.tracefs import Field, Tracepoint

_TOKEN = re.compile(r'\s*(?:(?P<str>"[^"]*"|\'[^\']*\')|(?P<num>-?(?:0x[0-9a-fA-F]+|\d+))\b'
                    r'|(?P<op>&&|\|\||==|!=|<=|>=|<|>|~|&|!|\(|\))|(?P<id>[A-Za-z_]\w*))')
_INT_OPS = {"==", "!=", "<", "<=", ">", ">=", "&"}
_STR_OPS = {"==", "!=", "~"}
MAX_STRING = 128
MAX_NESTING = 32          # '(' and '!' inside each other (500 were a RecursionError)


@dataclass
class CompiledFilter:
    expression: str      # a C boolean expression over `ctx`
    helpers: str         # C functions the expression calls (string comparisons)


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise SpecError(f"malformed filter '{text}': cannot read '{text[pos:].strip()}'")
        kind = m.lastgroup or ""
        if kind == "num":
            _check_number(text, m.group(kind), m.start(kind))
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


def _check_number(text: str, literal: str, col: int) -> None:
    """Numbers as C reads them (0x hex, 0 octal), within 64 bits: clang
    rejected the rest with an error about the generated program."""
    digits = literal.lstrip("-")
    base = 16 if digits[:2].lower() == "0x" else 8 if len(digits) > 1 and digits[0] == "0" else 10
    try:
        value = int(digits, base) * (-1 if literal.startswith("-") else 1)
    except ValueError:
        raise SpecError(f"malformed filter '{text}': bad number '{literal}' at column "
                        f"{col + 1}") from None
    if not -(1 << 63) <= value < 1 << 64:
        raise SpecError(f"malformed filter '{text}': number '{literal}' does not fit 64 bits "
                        f"at column {col + 1}")


class _Parser:
    def __init__(self, text: str, tp: Tracepoint, prefix: str) -> None:
        self.text, self.tp, self.prefix = text, tp, prefix
        self.toks = _tokens(text)
        self.i = 0
        self.depth = 0
        self.helpers: list[str] = []

    def error(self, what: str) -> SpecError:
        return SpecError(f"malformed filter '{self.text}' for {self.tp.name}: {what} "
                         "(e.g. --filter 'flags & 64 && dfd != 3')")

    def peek(self) -> tuple[str, str] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> tuple[str, str]:
        tok = self.peek()
        if tok is None:
            raise self.error("it ends too early")
        self.i += 1
        return tok

    def parse(self) -> str:
        expr = self.expr()
        if self.peek() is not None:
            raise self.error(f"unexpected '{self.peek()[1]}'")
        return expr

    def expr(self) -> str:
        parts = [self.term()]
        while self.peek() and self.peek()[1] in ("&&", "||"):
            parts.append(self.take()[1])
            parts.append(self.term())
        return "(" + " ".join(parts) + ")"

    def term(self) -> str:
        kind, value = self.take()
        if value in ("!", "("):
            if self.depth >= MAX_NESTING:
                raise self.error(f"nested more than {MAX_NESTING} levels deep")
            self.depth += 1
            try:
                if value == "!":
                    return f"!{self.term()}"
                inner = self.expr()
                if self.take()[1] != ")":
                    raise self.error("missing ')'")
                return inner
            finally:
                self.depth -= 1
        if kind != "id":
            raise self.error(f"expected a field name, got '{value}'")
        field = self.tp.field(value)
        op = self.take()[1]
        vkind, literal = self.take()
        return self.predicate(field, op, vkind, literal)

    def predicate(self, field: Field, op: str, vkind: str, literal: str) -> str:
        if vkind == "str":
            if not field.is_string and not field.ctype.endswith("char *"):
                raise self.error(f"field {field.name} is not a string")
            if op not in _STR_OPS:
                raise self.error(f"strings compare with == != ~, not {op}")
            return self.string_test(field, op, literal[1:-1])
        if vkind != "num":
            raise self.error(f"expected a number or a quoted string after {op}")
        if op not in _INT_OPS:
            raise self.error(f"integers compare with == != < <= > >= &, not {op}")
        read = _int_read(field)
        if op == "&":
            return f"(({read} & {literal}) != 0)"
        return f"({read} {op} {literal})"

    def string_test(self, field: Field, op: str, literal: str) -> str:
        prefix_only = op == "~" and literal.endswith("*")
        text = literal[:-1] if prefix_only else literal
        if op == "~" and ("*" in text or "?" in text):
            raise self.error("only a trailing * is supported in ~ patterns")
        if len(text) >= MAX_STRING:
            raise self.error(f"strings longer than {MAX_STRING - 1} bytes are not supported")
        name = f"{self.prefix}_str{len(self.helpers)}"
        wanted = text.encode() + (b"" if prefix_only else b"\0")
        self.helpers.append(f"PTK_INLINE bool {name}(void *ctx)\n{{\n"
                            f"    u64 buf[{MAX_STRING // 8}] = {{}};\n"
                            f"    {_string_read(field, self.tp.category)}\n"
                            f"{_word_checks(wanted)}\n    return true;\n}}\n")
        call = f"{name}(ctx)"
        return f"!{call}" if op == "!=" else call


def _word_checks(wanted: bytes) -> str:
    """Compare the string 8 bytes at a time (a byte loop overflows the BPF stack)."""
    checks = []
    for word in range(0, len(wanted), 8):
        chunk = wanted[word:word + 8]
        value = int.from_bytes(chunk.ljust(8, b"\0"), "little")
        mask = (1 << (8 * len(chunk))) - 1
        checks.append(f"    if ((buf[{word // 8}] & {mask:#x}ULL) != {value:#x}ULL) return false;")
    return "\n".join(checks)


def _int_read(field: Field) -> str:
    """The field as it is declared, so a literal compares as it would in C: a
    syscall tracepoint stores every argument in 8 unsigned bytes, but `int dfd`
    is an int (read as a u64, `dfd == -100` never matches AT_FDCWD). x86 is
    little-endian: the declared type's bytes come first."""
    if field.size not in (1, 2, 4, 8) or field.array is not None:
        raise SpecError(f"field {field.name} ({field.decl}) is not an integer")
    return f"(*({field_type(field).c_name} *)((char *)ctx + {field.offset}))"


def _string_read(field: Field, category: str) -> str:
    at = f"((char *)ctx + {field.offset})"
    if field.ctype.startswith("__data_loc"):
        return (f"u32 loc = *(u32 *){at};\n"
                "    bpf_probe_read_kernel_str(buf, sizeof(buf), (char *)ctx + (loc & 0xffff));")
    if field.array is not None:
        return f"bpf_probe_read_kernel_str(buf, sizeof(buf), {at});"
    reader = "ptk_probe_read_user_str" if category == "syscalls" else "bpf_probe_read_kernel_str"
    return f"{reader}(buf, sizeof(buf), (void *)*(u64 *){at});"


def compile_filter(text: str, tp: Tracepoint, prefix: str) -> CompiledFilter:
    """C for `text` on tracepoint `tp`; helper names start with `prefix`."""
    if not text.strip():
        return CompiledFilter("1", "")
    parser = _Parser(text, tp, prefix)
    expr = parser.parse()
    return CompiledFilter(expr, "\n".join(parser.helpers))


class _FtraceParser(_Parser):
    """The same grammar, written back as a kernel (ftrace) filter, or marked
    untranslatable where the kernel would compare differently from the C."""

    def __init__(self, text: str, tp: Tracepoint) -> None:
        super().__init__(text, tp, "ftrace")
        self.translatable = True

    def expr(self) -> str:
        # Grouped explicitly as C groups it (&& before ||), whatever the kernel's precedence.
        groups, current = [], [self.term()]
        while self.peek() and self.peek()[1] in ("&&", "||"):
            if self.take()[1] == "||":
                groups.append(current)
                current = []
            current.append(self.term())
        groups.append(current)
        return "(" + " || ".join("(" + " && ".join(g) + ")" for g in groups) + ")"

    def predicate(self, field: Field, op: str, vkind: str, literal: str) -> str:
        super().predicate(field, op, vkind, literal)     # the same checks and errors
        if vkind != "num" or not _same_in_kernel(field, op, _number(literal)):
            self.translatable = False
            return ""
        return f"({field.name} {op} {_number(literal)})"


def _number(literal: str) -> int:
    digits = literal.lstrip("-")
    base = 16 if digits[:2].lower() == "0x" else 8 if len(digits) > 1 and digits[0] == "0" else 10
    return int(digits, base) * (-1 if literal.startswith("-") else 1)


def _same_in_kernel(field: Field, op: str, value: int) -> bool:
    """Does the kernel's test (the field's `size:` bytes, `signed:` as tracefs
    says) give what the C gives (the declared type)? Strings are left to BPF:
    a syscall's string is a user pointer the kernel's filter does not follow."""
    ctype = field_type(field)
    bits = ctype.size * 8
    if op == "&":   # only the declared type's bits are tested, the same ones either way
        return 0 <= value < 1 << bits
    if (ctype.size, ctype.signed) != (field.size, field.signed):
        return False   # `int dfd` in 8 bytes: the kernel sees the upper 4 too
    low = -(1 << (bits - 1)) if ctype.signed else 0
    return low <= value < 1 << (bits - 1)


def ftrace_filter(text: str, tp: Tracepoint) -> str | None:
    """`text` as a filter the kernel applies itself (PERF_EVENT_IOC_SET_FILTER),
    or None when only BPF counts it exactly; malformed text raises as
    compile_filter would."""
    parser = _FtraceParser(text, tp)
    expr = parser.parse()
    return expr if parser.translatable else None
