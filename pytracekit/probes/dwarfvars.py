"""Variables of a source-line probe: their DWARF types and locations as C.

`Variable.emit` turns a DWARF location into C that reads the value at a
uprobe from its registers (struct pt_regs) and the process's memory:
frame-base offsets (the frame base is the CFA, from the CFI row at the
address), registers, computed values (-O2's DW_OP_stack_value), static
addresses (plus the load bias: the uprobe's ip minus the probed address).
lineprobes finds the variables and the expression in force at the address.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..errors import SpecError
from .expr import STR, CType

# DWARF register numbers (x86-64 psABI) -> struct pt_regs fields.
PT_REGS = {0: "ax", 1: "dx", 2: "cx", 3: "bx", 4: "si", 5: "di", 6: "bp", 7: "sp",
           **{n: f"r{n}" for n in range(8, 16)}, 16: "ip"}
_ATE_SIGNED = {"DW_ATE_signed", "DW_ATE_signed_char"}
_ATE_INT = _ATE_SIGNED | {"DW_ATE_unsigned", "DW_ATE_unsigned_char", "DW_ATE_boolean",
                          "DW_ATE_UTF"}


@dataclass
class Variable:
    """A parameter or local in scope at an address."""
    name: str
    type_name: str
    ctype: CType | None           # None: not an integer, pointer or string
    is_param: bool
    address: int
    ops: list | None = None       # the DWARF expression in force; None: none covers the address
    const: int | None = None      # DW_AT_const_value
    frame_base: list | None = None
    cfa: tuple[int, int] | None = None   # (DWARF register, offset) from the CFI row
    reason: str = ""              # why it cannot be read, when it cannot
    is_global: bool = False       # a variable of the compilation unit (static or global)

    @property
    def kind(self) -> str:
        return "parameter" if self.is_param else "global" if self.is_global else "local"

    @property
    def readable(self) -> bool:
        return not self.problem()

    def problem(self) -> str:
        if self.reason:
            return self.reason
        if self.ctype is None:
            return (f"'{self.name}' is a {self.type_name}: only integers, pointers and "
                    "strings can be read")
        if self.ops is None and self.const is None:
            return f"'{self.name}' is optimized out at {self.address:#x}"
        return ""

    def emit(self, new_local: Callable[[str, int], str]) -> tuple[list[str], str]:
        """(prelude statements, C expression of the value) at the probe, whose
        context is `struct pt_regs *ctx`. `new_local(stem, size)` names a
        fresh local."""
        why = self.problem()
        if why:
            raise SpecError(why)
        c_type = self.ctype.c_name  # type: ignore[union-attr]
        if self.ops is None:
            return [], f"(({c_type}){self.const & (1 << 64) - 1}ULL)"
        prelude: list[str] = []
        kind, value = _Translator(self, prelude, new_local).run(self.ops)
        if kind == "value":
            return prelude, f"(({c_type})({value}))"
        if self.ctype.kind == "str" and self.type_name.endswith("]"):  # a char array: its address
            return prelude, f"((u64)({value}))"
        size = self.ctype.size if self.ctype.kind == "int" else 8  # type: ignore[union-attr]
        name = new_local("local", 8)
        prelude.append(f"u{size * 8} {name} = 0; "
                       f"bpf_probe_read_user(&{name}, {size}, (void *)({value}));")
        return prelude, f"(({c_type}){name})"


class _Translator:
    """A DWARF location expression evaluated symbolically into C."""

    _BINARY = {"DW_OP_plus": "+", "DW_OP_minus": "-", "DW_OP_mul": "*", "DW_OP_and": "&",
               "DW_OP_or": "|", "DW_OP_xor": "^", "DW_OP_shl": "<<", "DW_OP_shr": ">>"}
    _COMPARE = {"DW_OP_eq": "==", "DW_OP_ne": "!=", "DW_OP_lt": "<", "DW_OP_gt": ">",
                "DW_OP_le": "<=", "DW_OP_ge": ">="}

    def __init__(self, var: Variable, prelude: list[str], new_local) -> None:
        self.var = var
        self.prelude = prelude
        self.new_local = new_local

    def unsupported(self, what: str) -> SpecError:
        return SpecError(f"'{self.var.name}' at {self.var.address:#x}: its location uses {what}, "
                         "which pytracekit cannot read")

    def cfa(self) -> str:
        if self.var.cfa is None:
            raise self.unsupported("the CFA, and no CFI row gives it at this address")
        reg, off = self.var.cfa
        return f"((u64)ctx->{PT_REGS[reg]} + {off})"

    def run(self, ops: list, frame_base: bool = False) -> tuple[str, str]:
        """("memory", C address) or ("value", C value)."""
        stack: list[str] = []
        for op in ops:
            name, args = op.op_name, op.args
            if name.startswith("DW_OP_lit"):
                stack.append(f"{int(name[9:])}ULL")
            elif name.startswith("DW_OP_const"):
                stack.append(f"({int(args[0]) & (1 << 64) - 1}ULL)")
            elif name.startswith("DW_OP_reg") and name != "DW_OP_regx":
                return "value", f"ctx->{self._reg(int(name[9:]))}"
            elif name == "DW_OP_regx":
                return "value", f"ctx->{self._reg(int(args[0]))}"
            elif name.startswith("DW_OP_breg") and name != "DW_OP_bregx":
                stack.append(f"((u64)ctx->{self._reg(int(name[10:]))} + ({int(args[0])}))")
            elif name == "DW_OP_bregx":
                stack.append(f"((u64)ctx->{self._reg(int(args[0]))} + ({int(args[1])}))")
            elif name == "DW_OP_fbreg":
                stack.append(f"({self.frame_base()} + ({int(args[0])}))")
            elif name == "DW_OP_call_frame_cfa":
                stack.append(self.cfa())
            elif name == "DW_OP_plus_uconst":
                stack.append(f"({stack.pop()} + {int(args[0])}ULL)")
            elif name in self._BINARY and len(stack) >= 2:
                b, a = stack.pop(), stack.pop()
                stack.append(f"({a} {self._BINARY[name]} {b})")
            elif name == "DW_OP_shra" and len(stack) >= 2:
                b, a = stack.pop(), stack.pop()
                stack.append(f"((u64)((s64)({a}) >> ({b})))")
            elif name in self._COMPARE and len(stack) >= 2:
                b, a = stack.pop(), stack.pop()
                stack.append(f"((u64)((s64)({a}) {self._COMPARE[name]} (s64)({b})))")
            elif name == "DW_OP_neg" and stack:
                stack.append(f"(-{stack.pop()})")
            elif name == "DW_OP_not" and stack:
                stack.append(f"(~{stack.pop()})")
            elif name == "DW_OP_dup" and stack:
                stack.append(stack[-1])
            elif name == "DW_OP_drop" and stack:
                stack.pop()
            elif name == "DW_OP_swap" and len(stack) >= 2:
                stack[-1], stack[-2] = stack[-2], stack[-1]
            elif name == "DW_OP_over" and len(stack) >= 2:
                stack.append(stack[-2])
            elif name == "DW_OP_deref" and stack:
                local = self.new_local("deref", 8)
                self.prelude.append(f"u64 {local} = 0; bpf_probe_read_user(&{local}, 8, "
                                    f"(void *)({stack.pop()}));")
                stack.append(local)
            elif name == "DW_OP_stack_value" and stack:
                return "value", stack[-1]
            elif name in ("DW_OP_entry_value", "DW_OP_GNU_entry_value"):
                raise SpecError(f"'{self.var.name}' is optimized out at {self.var.address:#x} "
                                "(only its value at the function's entry would give it)")
            elif name == "DW_OP_addr":
                # A link-time address: add the module's load bias, which is the
                # probed instruction's run-time address (the uprobe's ip) minus
                # its link-time one.
                stack.append(f"((u64)ctx->ip - {self.var.address}ULL + {int(args[0])}ULL)")
            elif name == "DW_OP_piece":
                raise self.unsupported("pieces (a value split over several places)")
            else:
                raise self.unsupported(name)
        if not stack:
            raise self.unsupported("an empty expression")
        return "memory", stack[-1]

    def _reg(self, number: int) -> str:
        if number not in PT_REGS:
            raise self.unsupported(f"DWARF register {number} (not a general register)")
        return PT_REGS[number]

    def frame_base(self) -> str:
        if not self.var.frame_base:
            raise self.unsupported("DW_OP_fbreg, and its function has no frame base here")
        # Its result is the frame base either way: an address computed
        # (DW_OP_call_frame_cfa, DW_OP_breg) or a register's contents (DW_OP_reg).
        _kind, value = _Translator(self.var, self.prelude, self.new_local).run(self.var.frame_base)
        return value


def attr_text(attr) -> str:
    if attr is None:
        return ""
    value = attr.value
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def die_name(die) -> str:
    return attr_text(die.attributes.get("DW_AT_name"))


def type_of(die) -> tuple[str, CType | None]:
    """A C spelling of the DIE's type and what pytracekit reads it as."""
    t = die.get_DIE_from_attribute("DW_AT_type") if "DW_AT_type" in die.attributes else None
    if t is None:
        return "void", None
    name = _type_name(t)
    return name, _classify(t)


def _strip(t):
    """The type under typedefs and qualifiers."""
    while t is not None and t.tag in ("DW_TAG_typedef", "DW_TAG_const_type",
                                      "DW_TAG_volatile_type", "DW_TAG_restrict_type",
                                      "DW_TAG_atomic_type"):
        t = t.get_DIE_from_attribute("DW_AT_type") if "DW_AT_type" in t.attributes else None
    return t


def _classify(t) -> CType | None:
    t = _strip(t)
    if t is None:
        return None
    size = t.attributes["DW_AT_byte_size"].value if "DW_AT_byte_size" in t.attributes else 0
    if t.tag == "DW_TAG_base_type":
        from elftools.dwarf.enums import ENUM_DW_ATE
        encoding = t.attributes.get("DW_AT_encoding")
        names = {v: k for k, v in ENUM_DW_ATE.items()}
        ate = names.get(encoding.value, "") if encoding else ""
        if ate in _ATE_INT and size in (1, 2, 4, 8):
            return CType("int", size, ate in _ATE_SIGNED)
        return None
    if t.tag == "DW_TAG_enumeration_type" and size in (1, 2, 4, 8):
        return CType("int", size, True)
    if t.tag == "DW_TAG_pointer_type":
        target = _strip(t.get_DIE_from_attribute("DW_AT_type")) if "DW_AT_type" in t.attributes else None
        if target is not None and target.tag == "DW_TAG_base_type" and \
                target.attributes.get("DW_AT_byte_size").value == 1:
            return STR
        return CType("ptr")
    if t.tag == "DW_TAG_array_type" and "DW_AT_type" in t.attributes:
        element = _strip(t.get_DIE_from_attribute("DW_AT_type"))
        if element is not None and element.tag == "DW_TAG_base_type" and \
                element.attributes.get("DW_AT_byte_size").value == 1:
            return STR
    return None


def _type_name(t, depth: int = 0) -> str:
    if t is None or depth > 16:
        return "void"
    inner = (t.get_DIE_from_attribute("DW_AT_type") if "DW_AT_type" in t.attributes else None)
    if t.tag in ("DW_TAG_base_type", "DW_TAG_typedef"):
        return die_name(t)
    if t.tag in ("DW_TAG_structure_type", "DW_TAG_union_type", "DW_TAG_enumeration_type"):
        word = {"DW_TAG_structure_type": "struct", "DW_TAG_union_type": "union",
                "DW_TAG_enumeration_type": "enum"}[t.tag]
        return f"{word} {die_name(t) or '(anonymous)'}"
    if t.tag == "DW_TAG_pointer_type":
        return _type_name(inner, depth + 1) + " *"
    if t.tag == "DW_TAG_const_type":
        return "const " + _type_name(inner, depth + 1)
    if t.tag == "DW_TAG_volatile_type":
        return "volatile " + _type_name(inner, depth + 1)
    if t.tag == "DW_TAG_restrict_type":
        return _type_name(inner, depth + 1) + " restrict"
    if t.tag == "DW_TAG_array_type":
        count = ""
        for sub in t.iter_children():
            if sub.tag == "DW_TAG_subrange_type":
                for attr in ("DW_AT_count", "DW_AT_upper_bound"):
                    if attr in sub.attributes and isinstance(sub.attributes[attr].value, int):
                        value = sub.attributes[attr].value
                        count = str(value + 1 if attr == "DW_AT_upper_bound" else value)
                        break
        return f"{_type_name(inner, depth + 1)} [{count}]"
    if t.tag == "DW_TAG_subroutine_type":
        return "function"
    return die_name(t) or t.tag.replace("DW_TAG_", "")
