"""Source lines and local variables of user binaries, from their DWARF.

What perf probe's -L, -V and FILE:LINE give: `place_for_file_line` and
`place_for_function_line` turn a source line into the address a uprobe goes
to (the line table's first is_stmt row of that line inside a function),
`function_listing` marks which of a function's lines have such a row, and
`variables_at` finds the parameters and locals in scope at an address with
their types and the DWARF expression in force there (a location list's
entry covering the address; none means "optimized out at ADDR"), which
`dwarfvars.Variable.emit` turns into C.

DWARF is read with pyelftools (Debian's python3-pyelftools).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

from .dwarfvars import PT_REGS, Variable, attr_text, die_name, type_of
from ..symbolize.elfsyms import load_image
from ..errors import NotFoundError, NotSupportedError
from ..symbolize.srclines import dwarf_file, read_source

_LIST_FORMS = ("DW_FORM_sec_offset", "DW_FORM_loclistx", "DW_FORM_data4", "DW_FORM_data8")
SOURCE_SUFFIXES = (".c", ".h", ".cc", ".cpp", ".cxx", ".hh", ".hpp", ".hxx", ".C", ".s", ".S")


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
        image = load_image(path)
        if image is None:
            raise NotFoundError(f"cannot read {path} (not an ELF file pytracekit reads)")
        found = dwarf_file(path, image.build_id())   # itself, or its separate debug file
        if found is None:
            raise NotFoundError(f"{path} has no DWARF (.debug_info), nor a debug file of its "
                                "build id: source lines and variables need a build with -g")
        try:
            self._file = open(found, "rb")
            self.elf = ELFFile(self._file)
            self.dwarf = self.elf.get_dwarf_info()
        except (OSError, ELFError) as exc:
            raise NotFoundError(f"cannot read the DWARF of {path} in {found}: {exc}") from None
        self.dwarf_file = found
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
                    name = die_name(origin)
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
        comp_dir = attr_text(cu.get_top_DIE().attributes.get("DW_AT_comp_dir"))
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
        function's own file; code inlined into it is left out)."""
        _, die, cu = self._entry(function)
        inlined = self._inlined_ranges(die, cu)
        out: dict[int, int] = {}
        for address, file, line in self.rows(cu):
            if function.contains(address) and file == function.decl_file and \
                    not any(low <= address < high for low, high in inlined):
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
        name = die_name(origin)
        if not name:
            return None
        type_name, ctype = type_of(origin)
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
        ranges = self._ranges_of(die, cu)
        # a block without addresses: its variables are the enclosing scope's
        return ranges is None or any(low <= address < high for low, high in ranges)

    def _ranges_of(self, die, cu) -> list[tuple[int, int]] | None:
        """The DIE's address ranges; None when it has none (or only indexed
        ones, of split DWARF)."""
        attrs = die.attributes
        if "DW_AT_low_pc" in attrs and "DW_AT_high_pc" in attrs:
            low = attrs["DW_AT_low_pc"].value
            high = attrs["DW_AT_high_pc"]
            return [(low, high.value if high.form == "DW_FORM_addr" else low + high.value)]
        if "DW_AT_ranges" not in attrs or attrs["DW_AT_ranges"].form == "DW_FORM_rnglistx":
            return None
        from elftools.dwarf.ranges import BaseAddressEntry, RangeEntry
        lists = self.dwarf.range_lists()
        if lists is None:
            return []
        base, out = _cu_base(cu), []
        for entry in lists.get_range_list_at_offset(attrs["DW_AT_ranges"].value, cu=cu):
            if isinstance(entry, BaseAddressEntry):
                base = entry.base_address
            elif isinstance(entry, RangeEntry):
                offset = 0 if getattr(entry, "is_absolute", False) else base
                out.append((entry.begin_offset + offset, entry.end_offset + offset))
        return out

    def _inlined_ranges(self, die, cu) -> list[tuple[int, int]]:
        """Where code inlined into the function runs (its lines are the
        callee's, even when the callee is in the same file)."""
        out: list[tuple[int, int]] = []
        for child in die.iter_children():
            if child.tag == "DW_TAG_inlined_subroutine":
                out += self._ranges_of(child, cu) or []
            elif child.tag == "DW_TAG_lexical_block":
                out += self._inlined_ranges(child, cu)
        return out


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
    text = read_source(function.decl_file) or []
    first, last = min(function.decl_line, min(lines)), max(lines)
    return function, [(n, lines.get(n), text[n - 1] if 0 < n <= len(text) else "")
                      for n in range(first, last + 1)]


# ---------------------------------------------------------------------------
# helpers


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


def _cfa_at(path: str, address: int) -> tuple[int, int] | None:
    """(register, offset) of the CFA at `address`, from .eh_frame or .debug_frame."""
    from ..symbolize import cfi, elfsyms
    image = elfsyms.load_image(path)
    for section in (".eh_frame", ".debug_frame"):
        info = cfi.cfi_of(image, section)
        rule = info.rule_at(address) if info is not None else None
        if rule is not None and not rule.cfa_expr and rule.cfa_reg in PT_REGS:
            return rule.cfa_reg, rule.cfa_off
    return None
