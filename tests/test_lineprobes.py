"""Source-line probes (perf probe's FILE:LINE, FUNC:RLN, -L, -V) on the workload's
`lineloop` mode, built -O0 with frame pointers (locals on the stack, read at
frame-base offsets from the CFA) and -O2 without (locals in registers, from
location lists). line_loop(N)'s locals at the LINE_PROBE line are i = 0..N-1,
sq = i*i + 7 and parity "even"/"odd"."""
import re

import pytest

from conftest import WORKLOAD_SRC, pytracekit
from probe_helpers import one_error_line, validated_json_lines
from pytracekit.probes import specs as probes, lineprobes
from pytracekit.errors import SpecError

N = 6
SOURCE = WORKLOAD_SRC.read_text().splitlines()
DECL = next(i for i, l in enumerate(SOURCE, 1) if l.startswith("NOINLINE void line_loop("))
PROBE_LINE = next(i for i, l in enumerate(SOURCE, 1) if "/* LINE_PROBE */" in l)
SQ_LINE = next(i for i, l in enumerate(SOURCE, 1) if "long sq = " in l and i > DECL)
REL = PROBE_LINE - DECL
EXPECTED = [f"i={i} sq={i * i + 7} parity={'odd' if i % 2 else 'even'}" for i in range(N)]


def messages(out: str, func: str) -> list[str]:
    """The message of each event line of probe `func` (trace's FUNC column)."""
    out_lines = []
    for line in out.splitlines()[1:]:
        fields = line.split(None, 4)
        if len(fields) == 5 and fields[3] == func:
            out_lines.append(fields[4])
    return out_lines


# -- pure: specs, DWARF reading, emitted C ------------------------------------

def test_line_specs_parse_and_malformed_ones_say_why():
    spec = probes.parse_spec("/bin/app:parse.c:120")
    assert (spec.kind, spec.library, spec.source_file, spec.line) == ("uprobe", "/bin/app",
                                                                    "parse.c", 120)
    spec = probes.parse_spec("p:app:parse_header:3")
    assert (spec.library, spec.function, spec.line, spec.source_file) == ("app", "parse_header", 3, "")
    assert not probes.parse_spec("p:c:malloc").is_line
    assert probes.parse_spec("u:lib:prov:probe").kind == "usdt"
    for text, part in (("/bin/app:parse.c:x1", "the line is not a number"),
                       ("r:/bin/app:parse.c:3", "no return probe"),
                       ("p:/bin/app:12", "needs its file or function"),
                       ("/bin/app:pa*rse:3", "neither a source file"),
                       ("/bin/app:parse.c:0", "count from 1"),
                       (":parse.c:3", "needs its binary")):
        with pytest.raises(SpecError, match=part):
            probes.parse_spec(text)


def test_a_line_has_no_return_probe(workload):
    # a uretprobe swaps the word on top of the stack for a trampoline: only at
    # a function's entry is that the return address
    spec = probes.parse_spec(f"{workload}:line_loop:{REL}")
    with pytest.raises(SpecError, match="is a source line: it has no return"):
        spec.returning()
    resolved, = probes.resolve(spec)
    assert resolved.offset > 0 and resolved.place.line == PROBE_LINE
    with pytest.raises(SpecError, match="is a source line: it has no return"):
        resolved.returning()


def test_lines_and_variables_from_dwarf_at_O0_and_O2(workload, workload_nofp):
    for binary in (workload, workload_nofp):
        info = lineprobes.debug_info(binary)
        function = info.function("line_loop")
        assert function.decl_line == DECL
        lines = info.function_lines(function)
        # the loop's lines have code; the declaration line and the loop's '}' none
        assert {DECL + 2, SQ_LINE, PROBE_LINE} <= set(lines) and DECL not in lines
        assert DECL + 6 not in lines, (binary, lines)
        by_file = info.place_for_file_line("workload/workload.c", PROBE_LINE)
        assert by_file == info.place_for_function_line("line_loop", REL)
        assert by_file[0].address == lines[PROBE_LINE]
        variables = info.variables_at(by_file[0].address)
        found = {v.name: (v.type_name, v.is_param, v.readable)
                 for v in variables if v.kind != "global"}
        globals_ = {v.name: (v.type_name, v.readable) for v in variables if v.kind == "global"}
        assert globals_["sink"] == ("volatile uint64_t", True)
        assert globals_["handoff"] == ("pthread_mutex_t", False)   # a struct
        assert found == {"n": ("int", True, True), "i": ("int", False, True),
                         "sq": ("long int", False, True),
                         "parity": ("const char *", False, True)}, binary


def test_emitted_c_reads_the_stack_at_O0_and_registers_at_O2(workload, workload_nofp):
    def c_for(binary: str) -> dict[str, tuple[list[str], str]]:
        place = lineprobes.debug_info(binary).place_for_function_line("line_loop", REL)[0]
        names = iter(range(100))
        return {v.name: v.emit(lambda stem, size: f"__{stem}{next(names)}")
                for v in lineprobes.debug_info(binary).variables_at(place.address) if v.readable}
    o0 = c_for(workload)
    prelude, value = o0["sq"]
    # frame base = CFA = rbp + 16 with a frame pointer; sq a signed 8-byte read from it
    assert re.fullmatch(r"u64 (__local\d+) = 0; bpf_probe_read_user\(&\1, 8, \(void \*\)"
                        r"\(\(\(\(u64\)ctx->bp \+ 16\) \+ \(-\d+\)\)\)\);", prelude[0]), prelude
    assert value.startswith("((s64)__local")
    o2 = c_for(workload_nofp)
    assert all(prelude == [] and "ctx->" in value
               for name, (prelude, value) in o2.items() if name in ("n", "i", "sq", "parity")), o2
    # a global: its link-time address plus the load bias (the uprobe's ip minus
    # the probed address), read from memory
    assert re.search(r"\(\(u64\)ctx->ip - \d+ULL \+ \d+ULL\)", o2["sink"][0][0]), o2["sink"]


# -- real probes -------------------------------------------------------------

@pytest.mark.root
def test_a_line_probe_prints_each_iterations_locals_at_O0(workload):
    fmt = '"i=%d sq=%d parity=%s", i, sq, parity'
    res = pytracekit("trace", f"{workload}:workload.c:{PROBE_LINE} {fmt}",
                     f"{workload}:line_loop:{REL} (sq > 20 && parity == \"even\") \"big %d\", sq",
                     "--", workload, "lineloop", str(N))
    assert res.returncode == 0, res.stderr
    got = messages(res.stdout, f"workload.c:{PROBE_LINE}")
    assert [m for m in got if m.startswith("i=")] == EXPECTED, res.stdout
    assert [m for m in got if m.startswith("big")] == [
        f"big {i * i + 7}" for i in range(N) if i * i + 7 > 20 and i % 2 == 0], res.stdout


def sink_before(i: int) -> int:
    """The workload's global `sink` when iteration i reaches LINE_PROBE: each
    line_sink call adds i + sq + parity[0]."""
    return sum(j + j * j + 7 + ord("o" if j % 2 else "e") for j in range(i))


@pytest.mark.root
def test_a_line_probe_prints_each_iterations_locals_at_O2(workload_nofp):
    res = pytracekit("trace", f'{workload_nofp}:line_loop:{REL} "i=%d sq=%d parity=%s", i, sq, parity',
                     f'{workload_nofp}:line_loop:{REL} "sink=%d", sink',
                     "--", workload_nofp, "lineloop", str(N))
    assert res.returncode == 0, res.stderr
    got = messages(res.stdout, f"workload.c:{PROBE_LINE}")
    assert [m for m in got if m.startswith("i=")] == EXPECTED, res.stdout
    assert [m for m in got if m.startswith("sink=")] == [f"sink={sink_before(i)}" for i in range(N)]


@pytest.mark.root
def test_a_stripped_binary_takes_its_dwarf_from_the_build_id_debug_file(workload_stripped):
    path = workload_stripped.path
    res = pytracekit("trace", f'{path}:workload.c:{PROBE_LINE} "i=%d sq=%d parity=%s", i, sq, parity',
                     "--", path, "lineloop", str(N), env=workload_stripped.env)
    assert res.returncode == 0, res.stderr
    assert messages(res.stdout, f"workload.c:{PROBE_LINE}") == EXPECTED, res.stdout
    res = pytracekit("trace", f"{path}:workload.c:{PROBE_LINE}")   # no debug root given
    assert "has no DWARF (.debug_info), nor a debug file of its build id" in one_error_line(res, 1)


@pytest.mark.root
def test_argdist_counts_a_local_by_name(workload_nofp):
    res = pytracekit("argdist", "-C", f"p:{workload_nofp}:line_loop:{REL}:char*,long:parity,sq",
                     "--", workload_nofp, "lineloop", str(N))
    assert res.returncode == 0, res.stderr
    rows = sorted(re.findall(r"^\s+(\d+)\s+parity = (\w+), sq = (\d+)$", res.stdout, re.M))
    assert rows == sorted(("1", "odd" if i % 2 else "even", str(i * i + 7)) for i in range(N)), \
        res.stdout


@pytest.mark.root
def test_a_variable_optimized_out_at_the_line_is_one_error(workload_nofp):
    # At -O2, parity gets its value only after the sq line's first instruction.
    rel = SQ_LINE - DECL
    res = pytracekit("trace", f'{workload_nofp}:line_loop:{rel} "%s", parity',
                     "--", workload_nofp, "lineloop", "1")
    line = one_error_line(res, 2)
    assert re.fullmatch(r"pytracekit trace: error: format arguments: 'parity' is optimized out "
                        r"at 0x[0-9a-f]+", line), line
    listed = pytracekit("list", "-V", f"{workload_nofp}:line_loop:{rel}")
    assert listed.returncode == 0, listed.stderr
    assert re.search(r"const char \*\s+parity\s+\['parity' is optimized out at 0x", listed.stdout)


@pytest.mark.root
def test_malformed_and_missing_lines_are_one_error(workload):
    line = one_error_line(pytracekit("trace", f"{workload}:workload.c:12x"), 2)
    assert "the line is not a number" in line
    line = one_error_line(pytracekit("trace", f"{workload}:line_loop:{REL + 1}"), 1)
    assert f"line {REL + 1} of line_loop (line {PROBE_LINE + 1} of workload.c) has no code" in line
    line = one_error_line(pytracekit("trace", f"{workload}:nosuch.c:3"), 1)
    assert "no source file nosuch.c" in line


def test_list_L_numbers_the_probeable_lines(workload):
    res = pytracekit("list", "-L", f"{workload}:line_loop")
    assert res.returncode == 0, res.stderr
    out = res.stdout.splitlines()
    assert out[0].startswith(f"line_loop at {WORKLOAD_SRC}:{DECL} in ")
    rows = [re.match(r"\s*(\d*)\s+(\d+)  ?(.*)$", l).groups() for l in out[1:]]
    assert rows[0] == ("", str(DECL), SOURCE[DECL - 1])
    assert (str(REL), str(PROBE_LINE), SOURCE[PROBE_LINE - 1]) in rows
    assert ("", str(PROBE_LINE + 1), SOURCE[PROBE_LINE]) in rows     # the loop's '}'
    objs = validated_json_lines("list", pytracekit("list", "-L", f"{workload}:line_loop",
                                                   "--json").stdout)
    assert [o["line"] for o in objs if o["probeable"]] == \
        [int(r[1]) for r in rows if r[0]]


@pytest.mark.root
def test_list_V_shows_the_locals_with_types(workload):
    res = pytracekit("list", "-V", f"{workload}:workload.c:{PROBE_LINE}")
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[0].startswith(
        f"Variables at line_loop:{REL} (workload.c:{PROBE_LINE}, {workload}+0x")
    out = res.stdout.splitlines()
    assert [l.split() for l in out[1:5]] == [
        ["int", "n", "(parameter)"], ["int", "i"], ["long", "int", "sq"],
        ["const", "char", "*", "parity"]]
    assert out[5].startswith("  globals of the file, readable by name too: "), out
    readable_globals = out[5].split(": ")[1].split(", ")
    assert "sink" in readable_globals and "handoff" not in readable_globals, out[5]
    objs = validated_json_lines("list", pytracekit("list", "-V", f"{workload}:line_loop:{REL}",
                                                   "--json").stdout)
    assert [(o["name"], o["kind"], o["readable"]) for o in objs if o["kind"] != "global"] == [
        ("n", "parameter", True), ("i", "local", True), ("sq", "local", True),
        ("parity", "local", True)]


def test_list_L_and_V_errors_are_one_line(workload):
    line = one_error_line(pytracekit("list", "-L", "/usr/bin/xz:main"), 1)
    assert line == ("pytracekit list: error: /usr/bin/xz has no DWARF (.debug_info), nor a "
                    "debug file of its build id: source lines and variables need a build with -g")
    line = one_error_line(pytracekit("list", "-V", f"{workload}:line_loop"), 2)
    assert "-V takes BINARY:FUNCTION:LINE or BINARY:FILE.c:LINE" in line
    line = one_error_line(pytracekit("list", "-L", f"{workload}:no_such_function"), 1)
    assert "no function no_such_function in the DWARF of" in line
