"""Generated BPF C for user-written probes (trace, argdist).

A probe as the user writes it, `c:malloc(size_t size)`, is split into the
probe spec proper (parsed by `probes.parse_spec`) and its signature (parsed
here). `ProbeFunction` assembles the C of one probe: the pid filter, the
values recorded at entry when a return probe needs them ($latency, $entry(),
parameters), the expression preludes, the filter and a tool's body. Every
expression comes through `expr_c.Emitter`; no user text is pasted.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from . import expr
from ..errors import SpecError
from .expr import CType, Node, Scope
from .expr_c import Emitter
from .specs import program_return
from ..engine.runner import signals_held

ENTRY_MAP_SIZE = 10240


def split_signature(head: str, what: str = "probe") -> tuple[str, str | None]:
    """'c:malloc(size_t size)' -> ('c:malloc', 'size_t size'); no parens -> None."""
    if "(" not in head:
        if ")" in head:
            raise SpecError(f"{what}: ')' without '(' in '{head}'")
        return head, None
    open_at = head.index("(")
    if not head.endswith(")") or head.count("(") != 1 or head.count(")") != 1:
        raise SpecError(f"{what}: the signature must be one '(...)' after the function: "
                        f"'{head}' (e.g. c:malloc(size_t size))")
    return head[:open_at], head[open_at + 1:-1]


def parse_signature(text: str | None, what: str = "signature") -> tuple[tuple[str, CType], ...]:
    """'int fd, const char *buf, size_t count' -> ((name, type), ...)."""
    if text is None or not text.strip() or text.strip() == "void":
        return ()
    params: list[tuple[str, CType]] = []
    for piece in text.split(","):
        m = re.fullmatch(r"\s*(.*?[\s*])([A-Za-z_]\w*)\s*", piece)
        if not m or not m.group(1).strip():
            raise SpecError(f"{what}: '{piece.strip()}' is not 'TYPE NAME' in ({text})")
        name = m.group(2)
        if name in (p for p, _ in params):
            raise SpecError(f"{what}: parameter '{name}' appears twice in ({text})")
        if re.fullmatch(r"arg\d+", name) or name in expr.BUILTINS or name in (
                "retval", "comm", "args", "STRCMP"):
            raise SpecError(f"{what}: parameter name '{name}' is reserved; choose another")
        params.append((name, expr.parse_type(m.group(1), what)))
    if len(params) > expr.MAX_REGISTER_ARGS:
        raise SpecError(f"{what}: at most {expr.MAX_REGISTER_ARGS} parameters are passed in "
                        f"registers, not {len(params)}")
    return tuple(params)


def usdt_arg_types(context, probe_name: str) -> tuple[CType, ...]:
    """Argument types of a USDT probe from its note (`-4@112(%rsp)`: a signed int).
    Eight-byte arguments stay untyped words: they are often pointers."""
    with signals_held():   # BCC calls back into Python per probe
        found = context.enumerate_probes()
    for probe in found:
        if probe.short_name() == probe_name or probe.name.decode() == probe_name:
            location = probe.get_location(0)
            out = []
            for i in range(probe.num_arguments):
                arg = location.get_argument(i)
                size = arg.size if arg.size in (1, 2, 4, 8) else 8
                out.append(expr.WORD if size == 8 else CType("int", size, arg.signed))
            return tuple(out)
    return ()


def scope_for(probe, params: tuple[tuple[str, CType], ...] = (),
              retval_type: CType = expr.S64, usdt_context=None) -> Scope:
    """The names available at a resolved probe (reads tracefs for tracepoints;
    a USDT probe's argument types come from its enabled `usdt_context`)."""
    tracepoint = None
    if probe.kind == "tracepoint":
        from ..kernel import tracefs
        tracepoint = tracefs.tracepoint(probe.category, probe.function)
        if params:
            raise SpecError(f"tracepoint {probe.target} takes no signature: its fields are "
                            "args->" + ", args->".join(f.name for f in tracepoint.fields))
    if probe.kind == "usdt" and params:
        raise SpecError(f"USDT probe {probe.target} takes no signature: use arg1..argN")
    usdt_args = usdt_arg_types(usdt_context, probe.function) if usdt_context else None
    ctx_args = None
    if getattr(probe, "via_fentry", False):
        ctx_args = len(probe.params)
        if len(params) > ctx_args:
            raise SpecError(f"kernel function {probe.function} takes {ctx_args} parameters "
                            f"({', '.join(probe.params) or 'none'}), not {len(params)}")
    scope = Scope.for_probe(probe.kind, params, tracepoint, retval_type, usdt_args, ctx_args)
    place = getattr(probe, "place", None)
    if place is not None:   # a source line: its variables by name
        from dataclasses import replace
        from .lineprobes import debug_info
        if params:
            raise SpecError(f"{probe.name} is a source line: it takes no signature (its "
                            "parameters and locals are read by name from DWARF)")
        scope = replace(scope, locals=tuple(debug_info(probe.binary).variables_at(place.address)))
    return scope


@dataclass
class ProbeFunction:
    """The C of one probe, assembled from emitted expressions.

    Use: make it, call `emit(...)`/`filter(...)`, add body statements with
    `body.append(...)`, then `source()`. `fn_name` is the BPF function to
    attach at the probe, `entry_fn` (when set) the one for its entry probe.
    """

    fn_name: str
    scope: Scope
    string_size: int = 80
    body: list[str] = field(default_factory=list)
    filter_c: str = ""
    guard: str = ""             # a C condition under which the probe does nothing
    usdt_context: object = None  # the bcc.USDT context of a USDT probe, enabled for fn_name
    emitter: Emitter = field(init=False)

    def __post_init__(self) -> None:
        self.emitter = Emitter(self.scope, self.string_size)

    def emit(self, node: Node) -> str:
        return self.emitter.expr(node)

    def set_filter(self, node: Node | None) -> None:
        if node is not None:
            self.filter_c = self.emitter.expr(node)

    @property
    def needs_entry(self) -> bool:
        return self.scope.kind == "return" and (
            bool(self.emitter.entry_values) or self.emitter.uses_latency)

    @property
    def entry_fn(self) -> str | None:
        return f"{self.fn_name}_enter" if self.needs_entry else None

    @property
    def ctx_type(self) -> str:
        # fentry/fexit contexts are arrays of u64 (see expr_c); tracepoints' are records.
        if self.scope.kind == "tracepoint" or self.scope.ctx_args is not None:
            return "void"
        return "struct pt_regs"

    @property
    def ret(self) -> str:
        """What every return of fn_name returns: PTK_TP_PASS on a tracepoint,
        whose events 0 would drop for every other perf user of it."""
        return program_return(self.scope.kind)

    def _prologue(self, ret: str) -> list[str]:
        out = ["    if (!ptk_selected())", f"        return {ret};"]
        if self.guard:
            out += [f"    if ({self.guard})", f"        return {ret};"]
        return out

    def source(self) -> str:
        out: list[str] = []
        name = self.fn_name
        ctx = f"{self.ctx_type} *ctx"
        if self.needs_entry:
            values = self.emitter.entry_values
            out += [f"struct {name}_entry_t {{ u64 ts; u64 v[{max(1, len(values))}]; }};",
                    f"BPF_HASH({name}_entries, u64, struct {name}_entry_t, {ENTRY_MAP_SIZE});",
                    f"int {name}_enter({ctx})", "{", *self._prologue("0"),
                    "    u64 __key = bpf_get_current_pid_tgid();",
                    f"    struct {name}_entry_t __entry = {{}};",
                    "    __entry.ts = bpf_ktime_get_ns();"]
            out += [f"    __entry.v[{i}] = {v};" for i, v in enumerate(values)]
            out += [f"    if ({name}_entries.update(&__key, &__entry))",
                    "        ptk_count_loss(PTK_MAP_FULL);", "    return 0;", "}", ""]
        out += [f"int {name}({ctx})", "{", *self._prologue(self.ret)]
        if self.needs_entry:
            # A return without its entry (attached mid-call) has nothing to report.
            out += ["    u64 __key = bpf_get_current_pid_tgid();",
                    f"    struct {name}_entry_t *__entryp = {name}_entries.lookup(&__key);",
                    "    if (!__entryp)", f"        return {self.ret};",
                    f"    struct {name}_entry_t __entry = *__entryp;",
                    f"    {name}_entries.delete(&__key);"]
        out += ["    " + line for line in self.emitter.prelude]
        if self.filter_c:
            out += [f"    if (!({self.filter_c}))", f"        return {self.ret};"]
        out += ["    " + line for line in self.body]
        out += [f"    return {self.ret};", "}", ""]
        return "\n".join(out)

    def attachments(self, probe) -> list:
        """(resolved probe, BPF function) pairs this function attaches."""
        pairs = [(probe.entry(), self.entry_fn)] if self.entry_fn else []
        return pairs + [(probe, self.fn_name)]

    def attach(self, prog, probe, pid: int | None = None) -> None:
        for where, fn_name in self.attachments(probe):
            where.attach(prog, fn_name, pid=pid)


def new_function(fn_name: str, probe, params: tuple, string_size: int, guard: str,
                 pid: int | None) -> ProbeFunction:
    """A ProbeFunction for a resolved probe, its scope read from the system. A USDT
    probe is enabled here (for -p PID or by path) since its note types its arguments."""
    context = probe.usdt_context(fn_name, pid) if probe.kind == "usdt" else None
    scope = scope_for(probe, params, usdt_context=context)
    return ProbeFunction(fn_name, scope, string_size, guard=guard, usdt_context=context)


def load_and_attach(name: str, functions: list[tuple[ProbeFunction, object]], target,
                    defines: dict, replace: dict, prepare=None):
    """Compile bpf/<name>.bpf.c with generated code, attach every (function,
    resolved probe) pair, and return the ready loader.Program; `prepare(program)`
    runs before attaching. On any failure everything done so far is undone,
    including the held command."""
    from ..engine.loader import Program
    from .specs import program_defines
    try:
        usdt = [fn.usdt_context or probe.usdt_context(fn.fn_name, target.pid or None)
                for fn, probe in functions if probe.kind == "usdt"]
        renames = program_defines(pair for fn, probe in functions for pair in fn.attachments(probe))
        prog = Program.from_file(name, defines={**defines, "FILTER_PID": target.pid, **renames},
                                 replace=replace, usdt=usdt)
    except BaseException:
        target.finish()
        raise
    try:
        if prepare is not None:
            prepare(prog)
        for fn, probe in functions:
            fn.attach(prog, probe, pid=target.pid or None)
        prog.ready()
    except BaseException:
        prog.close()
        target.finish()
        raise
    return prog
