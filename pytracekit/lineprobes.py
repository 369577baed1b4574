"""Source lines and local variables of user binaries, from their DWARF.

What perf probe's -L, -V and FILE:LINE give: `place_for_file_line` and
`place_for_function_line` turn a source line into the address a uprobe goes
to (the line table's first is_stmt row of that line inside a function),
`function_listing` marks which of a function's lines have such a row, and
`variables_at` finds the parameters and locals in scope at an address with
their types and DWARF locations. `Variable.emit` turns a location into C
that reads the value from the uprobe's registers (struct pt_regs) and the
process's memory: frame-base offsets (the frame base is the CFA, computed
from the CFI row at the address), registers, location lists (the entry
covering the address; none means "optimized out at ADDR"), small stack
programs (-O2's DW_OP_stack_value values).

DWARF is read with pyelftools (Debian's python3-pyelftools).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

from .errors import NotFoundError, NotSupportedError, SpecError
from .expr import CType, STR

# DWARF register numbers (x86-64 psABI) -> struct pt_regs fields.
PT_REGS = {0: "ax", 1: "dx", 2: "cx", 3: "bx", 4: "si", 5: "di", 6: "bp", 7: "sp",
           **{n: f"r{n}" for n in range(8, 16)}, 16: "ip"}
_LIST_FORMS = ("DW_FORM_sec_offset", "DW_FORM_loclistx", "DW_FORM_data4", "DW_FORM_data8")
SOURCE_SUFFIXES = (".c", ".h", ".cc", ".cpp", ".cxx", ".hh", ".hpp", ".hxx", ".C", ".s", ".S")
_ATE_SIGNED = {"DW_ATE_signed", "DW_ATE_signed_char"}
_ATE_INT = _ATE_SIGNED | {"DW_ATE_unsigned", "DW_ATE_unsigned_char", "DW_ATE_boolean",
                          "DW_ATE_UTF"}


def is_source_file(name: str) -> bool:
    """FILE in BINARY:FILE:LINE (a path or a C/C++/assembler file name)."""
    return "/" in name or name.endswith(SOURCE_SUFFIXES)


@dataclass(frozen=True)
class Function:
    name: str
    low: int
    high: int
    decl_file: str
    decl_line: int
    offset: int          # the DIE's offset in .debug_info

    def contains(self, address: int) -> bool:
        return self.low <= address < self.high


@dataclass(frozen=True)
class Place:
    """A source line where a probe can go."""
    address: int
    file: str
    line: int
    function: Function

    @property
    def rel_line(self) -> int:
        return self.line - self.function.decl_line

    @property
    def label(self) -> str:
        return f"{os.path.basename(self.file)}:{self.line}"


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
            return [], f"(({c_type}){self.const}LL)"
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


# ---------------------------------------------------------------------------
# Reading a binary's DWARF


class DebugInfo:
    """The DWARF of one binary (opened once per path, see `debug_info`)."""

    def __init__(self, path: str) -> None:
        try:
            from elftools.common.exceptions import ELFError
            from elftools.elf.elffile import ELFFile
        except ImportError:
            raise NotSupportedError("reading DWARF needs pyelftools: apt-get install "
                                    "python3-pyelftools (or `make setup`)") from None
        self.path = path
        self.elf = None
        for candidate in [path] + _debug_files(path):
            try:
                self._file = open(candidate, "rb")
                elf = ELFFile(self._file)
            except (OSError, ELFError) as exc:
                if candidate == path:
                    raise NotFoundError(f"cannot read {path}: {exc}") from None
                continue
            if elf.has_dwarf_info() and elf.get_section_by_name(".debug_info") is not None:
                self.elf, self.dwarf_file = elf, candidate
                break
            self._file.close()
        if self.elf is None:
            raise NotFoundError(f"{path} has no DWARF (.debug_info), nor a debug file of its "
                                "build id: source lines and variables need a build with -g")
        self.dwarf = self.elf.get_dwarf_info()
        self._functions: list[tuple[Function, object, object]] | None = None
        self._rows: dict[int, list[tuple[int, str, int]]] = {}

    # -- functions -----------------------------------------------------------

    def _all_functions(self) -> list[tuple[Function, object, object]]:
        if self._functions is None:
            out = []
            for cu in self.dwarf.iter_CUs():
                files = self._file_names(cu)
                for die in cu.get_top_DIE().iter_children():
                    if die.tag != "DW_TAG_subprogram" or "DW_AT_low_pc" not in die.attributes:
                        continue
                    low = die.attributes["DW_AT_low_pc"].value
                    high_attr = die.attributes.get("DW_AT_high_pc")
                    if high_attr is None:
                        continue
                    high = high_attr.value if high_attr.form == "DW_FORM_addr" else low + high_attr.value
                    origin = _origin(die)
                    name = _name(origin)
                    if not name:
                        continue
                    decl_file = origin.attributes.get("DW_AT_decl_file")
                    decl_line = origin.attributes.get("DW_AT_decl_line")
                    out.append((Function(name, low, high, _file_at(files, decl_file.value) if
                                         decl_file else "", decl_line.value if decl_line else 0,
                                         die.offset), die, cu))
            self._functions = out
        return self._functions

    def functions(self, name: str) -> list[Function]:
        return [f for f, _, _ in self._all_functions() if f.name == name]

    def function(self, name: str) -> Function:
        found = self.functions(name)
        if not found:
            raise NotFoundError(f"no function {name} in the DWARF of {self.path}")
        return found[0]

    def function_at(self, address: int) -> tuple[Function, object, object]:
        for entry in self._all_functions():
            if entry[0].contains(address):
                return entry
        raise NotFoundError(f"no function of {self.path} contains {address:#x} (per its DWARF)")

    # -- lines ---------------------------------------------------------------

    def _file_names(self, cu) -> list[str]:
        prog = self.dwarf.line_program_for_CU(cu)
        if prog is None:
            return []
        dirs = [d.decode(errors="replace") if isinstance(d, bytes) else str(d)
                for d in prog["include_directory"]]
        comp_dir = _text(cu.get_top_DIE().attributes.get("DW_AT_comp_dir"))
        version = prog["version"]
        names = []
        for entry in prog["file_entry"]:
            name = entry.name.decode(errors="replace") if isinstance(entry.name, bytes) else entry.name
            index = entry.dir_index
            if version < 5:
                directory = dirs[index - 1] if index > 0 else comp_dir
            else:
                directory = dirs[index] if index < len(dirs) else comp_dir
            if not os.path.isabs(directory):
                directory = os.path.join(comp_dir, directory)
            names.append(os.path.normpath(os.path.join(directory, name)))
        if version < 5:
            names.insert(0, names[0] if names else "")   # DWARF 4 files count from 1
        return names

    def rows(self, cu) -> list[tuple[int, str, int]]:
        """(address, file, line) of the CU's is_stmt line-table rows."""
        if cu.cu_offset not in self._rows:
            prog = self.dwarf.line_program_for_CU(cu)
            files = self._file_names(cu)
            out = []
            for entry in (prog.get_entries() if prog else []):
                state = entry.state
                if state is None or state.end_sequence or not state.is_stmt or state.line == 0:
                    continue
                out.append((state.address, _file_at(files, state.file), state.line))
            self._rows[cu.cu_offset] = out
        return self._rows[cu.cu_offset]

    def function_lines(self, function: Function) -> dict[int, int]:
        """line -> its first is_stmt address inside `function` (lines of the
        function's own file; code inlined from headers is left out)."""
        _, _, cu = self._entry(function)
        out: dict[int, int] = {}
        for address, file, line in self.rows(cu):
            if function.contains(address) and file == function.decl_file:
                if line not in out or address < out[line]:
                    out[line] = address
        return out

    def _entry(self, function: Function):
        return next(e for e in self._all_functions() if e[0] == function)

    def place_for_function_line(self, name: str, rel_line: int) -> list[Place]:
        out = []
        for function in self.functions(name) or [self.function(name)]:
            line = function.decl_line + rel_line
            address = self.function_lines(function).get(line)
            if address is not None:
                out.append(Place(address, function.decl_file, line, function))
        if not out:
            function = self.function(name)
            lines = sorted(self.function_lines(function))
            rel = [line - function.decl_line for line in lines]
            raise NotFoundError(f"line {rel_line} of {name} (line {function.decl_line + rel_line} "
                                f"of {os.path.basename(function.decl_file)}) has no code; lines "
                                f"with code: {_ranges(rel)} (`pytracekit list -L "
                                f"{self.path}:{name}` shows them)")
        return out

    def place_for_file_line(self, file: str, line: int) -> list[Place]:
        matched_file = False
        best: dict[Function, int] = {}
        for cu in self.dwarf.iter_CUs():
            for address, path, row_line in self.rows(cu):
                if not _same_file(path, file):
                    continue
                matched_file = True
                if row_line != line:
                    continue
                try:
                    function = self.function_at(address)[0]
                except NotFoundError:
                    continue
                if function not in best or address < best[function]:
                    best[function] = address
        if not matched_file:
            raise NotFoundError(f"no source file {file} in the line table of {self.path}")
        if not best:
            raise NotFoundError(f"line {line} of {file} has no code in {self.path} (`pytracekit "
                                "list -L BINARY:FUNCTION` shows the lines that have)")
        return [Place(address, function.decl_file, line, function)
                for function, address in sorted(best.items(), key=lambda kv: kv[1])]

    # -- variables -----------------------------------------------------------

    def variables_at(self, address: int) -> list[Variable]:
        """Parameters and locals in scope at `address`, innermost first where
        names repeat (an inner declaration hides an outer one)."""
        function, die, cu = self.function_at(address)
        frame_base = self._location_ops(die, "DW_AT_frame_base", address, cu)
        cfa = _cfa_at(self.path, address) or _cfa_at(self.dwarf_file, address)
        found: dict[str, Variable] = {}
        # GCC's -O2 block ranges can miss an address its variables' location
        # lists cover (the last instruction of a loop body): a variable of a
        # block not covering the address still counts where its location
        # list says it lives there, unless a name in scope hides it.
        stray: dict[str, Variable] = {}

        def visit(scope_die, inside: bool) -> None:
            for child in scope_die.iter_children():
                if child.tag in ("DW_TAG_formal_parameter", "DW_TAG_variable"):
                    var = self._variable(child, cu, address, frame_base, cfa)
                    if var is None:
                        continue
                    if inside:
                        found[var.name] = var   # later (inner) declarations win
                    elif var.ops is not None and "DW_AT_location" in child.attributes and \
                            child.attributes["DW_AT_location"].form in _LIST_FORMS:
                        stray.setdefault(var.name, var)
                elif child.tag == "DW_TAG_lexical_block":
                    visit(child, inside and self._contains(child, cu, address))

        visit(die, True)
        for name, var in stray.items():
            found.setdefault(name, var)
        # The compilation unit's variables, where no local hides them.
        for child in cu.get_top_DIE().iter_children():
            if child.tag == "DW_TAG_variable" and "DW_AT_location" in child.attributes:
                var = self._variable(child, cu, address, frame_base, cfa)
                if var is not None and var.name not in found:
                    var.is_global = True
                    found[var.name] = var
        order = {"parameter": 0, "local": 1, "global": 2}
        return sorted(found.values(), key=lambda v: order[v.kind])

    def _variable(self, die, cu, address, frame_base, cfa) -> Variable | None:
        origin = _origin(die)
        name = _name(origin)
        if not name:
            return None
        type_name, ctype = _type_of(origin)
        var = Variable(name, type_name, ctype, die.tag == "DW_TAG_formal_parameter", address,
                       frame_base=frame_base, cfa=cfa)
        if "DW_AT_const_value" in die.attributes:
            value = die.attributes["DW_AT_const_value"].value
            if isinstance(value, int):
                var.const = value
            else:
                var.reason = f"'{name}' is a constant pytracekit cannot read"
            return var
        var.ops = self._location_ops(die, "DW_AT_location", address, cu)
        return var

    def _location_ops(self, die, attr_name: str, address: int, cu) -> list | None:
        from elftools.dwarf.dwarf_expr import DWARFExprParser
        from elftools.dwarf.locationlists import (BaseAddressEntry, LocationEntry,
                                                 LocationExpr, LocationParser)
        attr = die.attributes.get(attr_name)
        if attr is None:
            return None
        parser = LocationParser(self.dwarf.location_lists())
        parsed = parser.parse_from_attribute(attr, cu["version"], die)
        expr_parser = DWARFExprParser(self.dwarf.structs)
        if isinstance(parsed, LocationExpr):
            return expr_parser.parse_expr(parsed.loc_expr)
        base = _cu_base(cu)
        for entry in parsed:
            if isinstance(entry, BaseAddressEntry):
                base = entry.base_address
            elif isinstance(entry, LocationEntry):
                offset = 0 if getattr(entry, "is_absolute", False) else base
                if entry.begin_offset + offset <= address < entry.end_offset + offset:
                    return expr_parser.parse_expr(entry.loc_expr)
        return None

    def _contains(self, die, cu, address: int) -> bool:
        attrs = die.attributes
        if "DW_AT_low_pc" in attrs and "DW_AT_high_pc" in attrs:
            low = attrs["DW_AT_low_pc"].value
            high = attrs["DW_AT_high_pc"]
            end = high.value if high.form == "DW_FORM_addr" else low + high.value
            return low <= address < end
        if "DW_AT_ranges" in attrs:
            from elftools.dwarf.ranges import BaseAddressEntry, RangeEntry
            ranges = self.dwarf.range_lists()
            if ranges is None:
                return False
            attr = attrs["DW_AT_ranges"]
            if attr.form == "DW_FORM_rnglistx":
                return True   # indexed lists (split DWARF): take the block as in scope
            base = _cu_base(cu)
            for entry in ranges.get_range_list_at_offset(attr.value, cu=cu):
                if isinstance(entry, BaseAddressEntry):
                    base = entry.base_address
                elif isinstance(entry, RangeEntry):
                    offset = 0 if getattr(entry, "is_absolute", False) else base
                    if entry.begin_offset + offset <= address < entry.end_offset + offset:
                        return True
            return False
        return True   # a block without addresses: its variables are the enclosing scope's


@lru_cache(maxsize=8)
def debug_info(path: str) -> DebugInfo:
    return DebugInfo(os.path.realpath(path))


def function_listing(path: str, name: str) -> tuple[Function, list[tuple[int, int | None, str]]]:
    """The function and its source lines: (line, first address or None, text)
    from its declaration to its last line with code. Text is "" when the
    source file cannot be read."""
    info = debug_info(path)
    function = info.function(name)
    lines = info.function_lines(function)
    if not lines:
        raise NotFoundError(f"{name} in {path} has no line-table rows in its own file")
    try:
        with open(function.decl_file, errors="replace") as f:
            text = f.read().splitlines()
    except OSError:
        text = []
    first, last = min(function.decl_line, min(lines)), max(lines)
    return function, [(n, lines.get(n), text[n - 1] if 0 < n <= len(text) else "")
                      for n in range(first, last + 1)]


# ---------------------------------------------------------------------------
# helpers


def _text(attr) -> str:
    if attr is None:
        return ""
    value = attr.value
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _name(die) -> str:
    return _text(die.attributes.get("DW_AT_name"))


def _origin(die):
    """The DIE holding a concrete instance's name and type (DW_AT_abstract_origin,
    DW_AT_specification), or the DIE itself."""
    for attr in ("DW_AT_abstract_origin", "DW_AT_specification"):
        if attr in die.attributes:
            return die.get_DIE_from_attribute(attr)
    return die


def _file_at(files: list[str], index: int) -> str:
    return files[index] if 0 <= index < len(files) else ""


def _same_file(path: str, given: str) -> bool:
    if not path:
        return False
    if os.path.isabs(given):
        return os.path.normpath(given) == path
    return path == given or path.endswith("/" + os.path.normpath(given))


def _cu_base(cu) -> int:
    low = cu.get_top_DIE().attributes.get("DW_AT_low_pc")
    return low.value if low is not None else 0


def _ranges(numbers: list[int]) -> str:
    """[1, 2, 3, 5] -> "1-3, 5"."""
    spans: list[list[int]] = []
    for n in sorted(numbers):
        if spans and n == spans[-1][1] + 1:
            spans[-1][1] = n
        else:
            spans.append([n, n])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)


def _debug_files(path: str) -> list[str]:
    """Separate debug files of `path` that exist and match its build id."""
    from . import elfsyms
    image = elfsyms.load_image(path)
    if image is None:
        return []
    build_id = image.build_id()
    out = []
    for candidate in elfsyms.debug_file_candidates(path, build_id, image.debuglink()):
        debug = elfsyms.load_image(candidate)
        if debug is not None and (not build_id or debug.build_id() in ("", build_id)):
            out.append(str(candidate))
    return out


def _cfa_at(path: str, address: int) -> tuple[int, int] | None:
    """(register, offset) of the CFA at `address`, from .eh_frame or .debug_frame."""
    from . import cfi, elfsyms
    image = elfsyms.load_image(path)
    for section in (".eh_frame", ".debug_frame"):
        info = cfi.cfi_of(image, section)
        rule = info.rule_at(address) if info is not None else None
        if rule is not None and not rule.cfa_expr and rule.cfa_reg in PT_REGS:
            return rule.cfa_reg, rule.cfa_off
    return None


def _type_of(die) -> tuple[str, CType | None]:
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
        return _name(t)
    if t.tag in ("DW_TAG_structure_type", "DW_TAG_union_type", "DW_TAG_enumeration_type"):
        word = {"DW_TAG_structure_type": "struct", "DW_TAG_union_type": "union",
                "DW_TAG_enumeration_type": "enum"}[t.tag]
        return f"{word} {_name(t) or '(anonymous)'}"
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
    return _name(t) or t.tag.replace("DW_TAG_", "")
