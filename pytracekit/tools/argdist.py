"""pytracekit argdist: counts and histograms of argument values (BCC's argdist).

    pytracekit argdist -C 'p:c:malloc(size_t size):size_t:size'
    pytracekit argdist -H 'r:c:malloc():u64:$latency' -i 5
    pytracekit argdist -C 't:syscalls:sys_enter_openat():char*:args->filename'

A spec is `{p,r,t,u}:{[library],category}:function(signature)
[:type[,type...]:expr[,expr...][:filter]][#label]`. Expressions and filters
are parsed by pytracekit.probes.expr; values are aggregated in the kernel.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import click

from ..probes import expr, codegen as probegen, specs as probes
from ..cli import options
from ..engine.loader import code_slot
from ..collect import stream
from ..errors import SpecError, UsageError
from ..probes.expr import CType
from ..collect.mapdrain import drained
from ..model import Histogram
from ..render.output import Output
from ..render.text import log2_histogram
from ..engine.runner import Target, announce
from ..families import summary
from ..families.periodic import run_periodic
from ..engine.session import ProgramSession

MAX_KEY_BYTES = 256
DRY_RUN_ARGS = ["-C", "t:syscalls:sys_enter_openat():int,char*:args->flags,args->filename",
                "-H", "t:syscalls:sys_enter_read():size_t:args->count"]


def _split_top(text: str, sep: str) -> list[str]:
    """Split on `sep` outside string literals and parentheses."""
    parts, depth, start, i = [], 0, 0, 0
    while i < len(text):
        c = text[i]
        if c == '"':
            i += 1
            while i < len(text) and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif c == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    parts.append(text[start:])
    return parts


@dataclass
class ArgdistSpec:
    """One -C/-H spec as written, split into its parts."""
    text: str
    kind: str                          # "freq" (-C) or "hist" (-H)
    probe_text: str                    # p:c:malloc
    signature: str | None
    types: list[str] = field(default_factory=list)
    exprs: str = ""
    filter: str | None = None
    label: str = ""


def split_spec(text: str, kind: str) -> ArgdistSpec:
    body, label = text, ""
    hashes = _split_top(text, "#")
    if len(hashes) > 1:
        body, label = hashes[0], "#".join(hashes[1:]).strip()
    parts = _split_top(body, ":")
    if len(parts) < 3 or parts[0] not in ("p", "r", "t", "u"):
        raise SpecError(f"bad argdist spec '{text}': write TYPE:LIBRARY:FUNCTION(SIGNATURE)"
                        "[:TYPES:EXPRS[:FILTER]][#LABEL], TYPE one of p r t u "
                        "(e.g. p:c:malloc(size_t size):size_t:size)")
    # p:BINARY:FILE.c:LINE and p:BINARY:FUNCTION:LINE (a source line) take
    # four fields: no type is a number.
    at = 4 if parts[0] == "p" and len(parts) > 3 and parts[3].strip().isdigit() else 3
    head = ":".join(parts[:at])
    rest = parts[at:]
    if len(rest) == 1:
        raise SpecError(f"bad argdist spec '{text}': types given but no expressions "
                        "(write ...:TYPE:EXPR)")
    if len(rest) > 3:
        raise SpecError(f"bad argdist spec '{text}': too many ':' fields after the function "
                        "(TYPES:EXPRS:FILTER at most)")
    spec_text, signature = probegen.split_signature(head, "argdist spec")
    out = ArgdistSpec(text, kind, spec_text, signature, label=label)
    if rest:
        out.types = [t.strip() for t in _split_top(rest[0], ",")]
        out.exprs = rest[1]
        out.filter = rest[2] if len(rest) == 3 and rest[2].strip() else None
    return out


@dataclass
class ArgdistProbe:
    """One spec at one resolved probe: its map, its C, how to read it back."""
    index: int
    spec: ArgdistSpec
    resolved: Any
    function: probegen.ProbeFunction
    types: list[CType]
    names: list[str]                 # how each expression is shown
    default_expr: bool
    c: str = ""

    @property
    def map_name(self) -> str:
        return f"argdist_{self.index}"

    @property
    def title(self) -> str:
        return self.spec.label or self.spec.text


def build_probe(index: int, spec: ArgdistSpec, resolved: Any, string_size: int,
                pid: int | None = None) -> ArgdistProbe:
    params = probegen.parse_signature(spec.signature, f"signature of {spec.probe_text}")
    fn = probegen.new_function(f"argdist_probe_{index}", resolved, params, string_size,
                               "ptk_is_self()", pid)
    scope = fn.scope
    if spec.filter is not None:
        fn.set_filter(expr.parse_filter(spec.filter, scope))
    default = not spec.types
    if default:
        if scope.kind == "return":
            types, nodes, names = [expr.S64], [expr.Var("$retval", "retval", expr.S64)], ["retval"]
        elif spec.kind == "hist":
            raise SpecError(f"argdist spec '{spec.text}': a histogram needs an expression "
                            "(...:TYPE:EXPR) on entry probes")
        else:
            types, nodes, names = [expr.U64], [expr.Num(0)], ["total calls"]
    else:
        types = [expr.parse_type(t, f"type in '{spec.text}'") for t in spec.types]
        nodes = expr.parse_list(spec.exprs, scope, "expression")
        names = [e.strip() for e in _split_top(spec.exprs, ",")]
        if len(nodes) != len(types):
            raise SpecError(f"argdist spec '{spec.text}': {len(types)} type(s) but "
                            f"{len(nodes)} expression(s)")
        if spec.kind == "hist" and len(nodes) != 1:
            raise SpecError(f"argdist spec '{spec.text}': a histogram takes one expression, "
                            f"not {len(nodes)}")
        for t, n, name in zip(types, nodes, names):
            if t.kind == "str" and not n.type.stringish:
                raise SpecError(f"argdist spec '{spec.text}': '{name}' is a number but its "
                                "type is a string")
            if t.kind != "str" and not n.type.numeric:
                raise SpecError(f"argdist spec '{spec.text}': '{name}' is a string; give it "
                                "the type char*")
            if spec.kind == "hist" and t.kind == "str":
                raise SpecError(f"argdist spec '{spec.text}': a histogram needs a number, "
                                "not a string")
    key_bytes = sum(string_size if t.kind == "str" else 8 for t in types)
    if key_bytes > MAX_KEY_BYTES:
        # The key lives on the 512-byte BPF stack; LLVM would end the process.
        raise SpecError(f"argdist spec '{spec.text}': its key needs {key_bytes} bytes, more "
                        f"than {MAX_KEY_BYTES}: use fewer string expressions or a smaller -z")
    probe = ArgdistProbe(index, spec, resolved, fn, types, names, default)
    name = probe.map_name
    if spec.kind == "hist":
        decl = f"BPF_HASH({name}, struct ptk_hist_key, u64, 1024);"
        fn.body = ["struct ptk_hist_key __k = {};",
                   f"__k.slot = ptk_log2_slot((u64)({fn.emit(nodes[0])}));"]
    else:
        fields = [f"char v{i}[STRING_SIZE];" if t.kind == "str" else f"{t.c_name} v{i};"
                  for i, t in enumerate(types)]
        decl = "\n".join([f"struct {name}_key {{", *("    " + f for f in fields), "};",
                          f"BPF_HASH({name}, struct {name}_key, u64, MAX_ENTRIES);"])
        fn.body = [f"struct {name}_key __k;", "__builtin_memset(&__k, 0, sizeof(__k));"]
        for i, (t, n) in enumerate(zip(types, nodes)):
            if t.kind == "str":
                fn.body.append(fn.emitter.read_string(n, f"__k.v{i}", f"sizeof(__k.v{i})"))
            else:
                fn.body.append(f"__k.v{i} = ({t.c_name}){fn.emit(n)};")
    fn.body += [f"u64 __zero = 0, *__count = {name}.lookup_or_try_init(&__k, &__zero);",
                "if (__count)", "    __sync_fetch_and_add(__count, 1);", "else",
                "    ptk_count_loss(PTK_MAP_FULL);"]
    probe.c = decl + "\n" + fn.source()
    return probe


def plan(specs: list[ArgdistSpec], *, pid: int | None, string_size: int,
         limit: int) -> list[ArgdistProbe]:
    out: list[ArgdistProbe] = []
    for spec in specs:
        parsed = probes.parse_spec(spec.probe_text)
        for resolved in probes.resolve(parsed, pid=pid, limit=limit):
            out.append(build_probe(len(out), spec, resolved, string_size, pid))
    return out


def _value(raw: Any, ctype: CType) -> Any:
    if ctype.kind == "str":   # the key is zeroed first: only a failed user read is marked
        return stream.user_text(bytes(raw))
    return int(raw)


class Argdist(ProgramSession):
    """A running argdist: `read()` gives each probe's counts or histogram."""

    def __init__(self, probes_: list[ArgdistProbe], prog: Any, target: Target) -> None:
        self.probes = probes_
        self.prog = prog
        self.target = target

    def read(self) -> list[tuple[ArgdistProbe, Any]]:
        out: list[tuple[ArgdistProbe, Any]] = []
        for p in self.probes:
            table = self.prog[p.map_name]
            if p.spec.kind == "hist":
                hist = Histogram(label=p.names[0] if not p.default_expr else "retval")
                for k, v in table.items():
                    hist.buckets[k.slot] = hist.buckets.get(k.slot, 0) + v.value
                out.append((p, hist))
            else:
                rows = []
                for k, v in table.items():
                    values = tuple(_value(getattr(k, f"v{i}"), t) for i, t in enumerate(p.types))
                    rows.append((values, v.value))
                out.append((p, rows))
        return out

    def clear(self) -> None:
        for p in self.probes:
            self.prog[p.map_name].clear()

    def close(self) -> None:
        self.prog.close()
        self.target.finish()


def start(hist_specs: list[str] = (), count_specs: list[str] = (), command: tuple = (), *,
          pid: int | None = None, string_size: int = 80,
          limit: int = probes.DEFAULT_LIMIT) -> Argdist:
    """Parse, compile, attach: a running Argdist (released by run_until_done)."""
    # Counts first, then histograms, as BCC's argdist orders them.
    specs = [split_spec(s, "freq") for s in count_specs] + \
        [split_spec(s, "hist") for s in hist_specs]
    if not specs:
        raise UsageError("give at least one -H or -C spec, e.g. "
                         "-C 'p:c:malloc(size_t size):size_t:size'")
    planned = plan(specs, pid=pid, string_size=string_size, limit=limit)
    target = Target.from_options(pid, command)
    prog = probegen.load_and_attach(
        "argdist", [(p.function, p.resolved) for p in planned], target,
        defines={"STRING_SIZE": string_size, "SELF_PID": os.getpid()},
        replace={code_slot("ARGDIST_PROBES"): "\n".join(p.c for p in planned)})
    return Argdist(planned, prog, target)


def _display_rows(p: ArgdistProbe, rows: list, top: int | None) -> list[str]:
    """BCC's layout: a tab, COUNT in 10 columns, then the event; largest last."""
    lines = ["\t%-10s %s" % ("COUNT", "EVENT")]
    ordered = sorted(rows, key=lambda r: (r[1], str(r[0])))
    if top:
        ordered = ordered[-top:]
    for values, count in ordered:
        if p.default_expr and p.function.scope.kind != "return":
            event = "total calls"
        else:
            event = ", ".join(f"{n} = {v}" for n, v in zip(p.names, values))
        lines.append("\t%-10s %s" % (count, event))
    return lines


def print_results(results: list, top: int | None, out: Output, stamp: str) -> None:
    out.line(f"[{stamp}]")
    for p, data in results:
        if p.spec.kind == "hist":
            def hist_text(hist: Histogram, p: ArgdistProbe = p) -> list[str]:
                text = log2_histogram(hist, p.spec.label or hist.label)
                return [p.title] + ([text] if text else [])
            out.histogram(data, text=hist_text, probe=p.title, time=stamp)
        else:
            out.emit(text=lambda p=p, data=data: [p.title] + _display_rows(p, data, top),
                     json=[{"type": "count", "probe": p.title, "time": stamp,
                            "values": dict(zip(p.names, values)), "count": count}
                           for values, count in sorted(data, key=lambda r: -r[1])])


@click.command("argdist", context_settings=options.TOOL_CONTEXT)
@options.pid_option("-p")
@click.option("-z", "--string-size", type=click.IntRange(8, 1024), default=80,
              show_default=True, help="Bytes kept of each string value.")
@options.interval_option("-i")
@options.duration_option("-d")
@click.option("-n", "--number", type=click.IntRange(min=1), default=None,
              help="Print this many intervals, then exit.")
@click.option("-c", "--cumulative", is_flag=True, help="Do not clear values between intervals.")
@click.option("-T", "--top", type=click.IntRange(min=1), default=None,
              help="Print only the top N counts.")
@click.option("-H", "--histogram", "hist_specs", multiple=True,
              help="A log2 histogram of one expression (repeatable).")
@click.option("-C", "--count", "count_specs", multiple=True,
              help="Counts of expression values (repeatable).")
@click.option("-v", "--print-program", is_flag=True,
              help="Print the generated BPF program (to stderr) before tracing.")
@click.option("--limit", type=click.IntRange(min=1), default=probes.DEFAULT_LIMIT,
              show_default=True, help="Most probes one spec may expand to.")
@options.output_options()
@options.standard
@options.command_argument
def command(pid, string_size, interval, duration, number, cumulative, top, hist_specs,
            count_specs, print_program, limit, out, command):
    """Counts (-C) and histograms (-H) of argument values, return values and latency.

    SPEC: {p,r,t,u}:{[library],category}:function(signature)
    [:type[,type...]:expr[,expr...][:filter]][#label]
    """
    interval, count, command = summary.interval_and_count(command, interval, None)
    if count is not None and number is not None:
        raise UsageError("give the count once: positionally or with -n")
    interval, number = interval or 1.0, number or count   # BCC: every second
    run = start(list(hist_specs), list(count_specs), tuple(command), pid=pid,
                string_size=string_size, limit=limit)
    if print_program:
        sys.stderr.write(run.prog.full_text)
    def each(final: bool) -> None:
        clear = [] if cumulative or final else [p.map_name for p in run.probes]
        with drained(run.prog, clear):
            results = run.read()
        print_results(results, top, out, time.strftime("%H:%M:%S"))
        sys.stdout.flush()

    try:
        announce(f"Tracing {len(run.probes)} probe{'s' if len(run.probes) != 1 else ''}... "
                 "Hit Ctrl-C to end.")
        run_periodic(run.target, duration=duration, interval=interval, count=number,
                     report=each)
        out.loss(run.loss())
    finally:
        run.close()
