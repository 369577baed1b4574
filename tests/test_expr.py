"""pytracekit.probes.expr: user expressions parsed, checked and emitted as C (no root)."""
import re
import sys

import pytest

from pytracekit.probes import expr, codegen as probegen
from pytracekit.errors import SpecError
from pytracekit.probes.expr import Scope, parse, parse_filter, parse_format, parse_type
from pytracekit.probes.expr_c import Emitter
from pytracekit.kernel.tracefs import parse_format as parse_tracefs_format
from pytracekit.tools import argdist, trace

OPENAT_FORMAT = """name: sys_enter_openat
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:int __syscall_nr;\toffset:8;\tsize:4;\tsigned:1;
\tfield:int dfd;\toffset:16;\tsize:8;\tsigned:0;
\tfield:const char * filename;\toffset:24;\tsize:8;\tsigned:0;
\tfield:int flags;\toffset:32;\tsize:8;\tsigned:0;
\tfield:umode_t mode;\toffset:40;\tsize:8;\tsigned:0;
"""
EXEC_FORMAT = """name: sched_process_exec
format:
\tfield:__data_loc char[] filename;\toffset:8;\tsize:4;\tsigned:0;
\tfield:pid_t pid;\toffset:12;\tsize:4;\tsigned:1;
\tfield:char comm[16];\toffset:16;\tsize:16;\tsigned:0;
"""


def entry_scope():
    return Scope.for_probe("uprobe", probegen.parse_signature("size_t size, const char *name"))


def return_scope():
    return Scope.for_probe("uretprobe", probegen.parse_signature("size_t size"))


def openat_scope():
    return Scope.for_probe("tracepoint", (), parse_tracefs_format("syscalls", "sys_enter_openat",
                                                                   OPENAT_FORMAT))


def exec_scope():
    return Scope.for_probe("tracepoint", (), parse_tracefs_format("sched", "sched_process_exec",
                                                                   EXEC_FORMAT))


def emit(text, scope):
    e = Emitter(scope)
    return e.expr(parse(text, scope)), e


def error(fn, *args) -> str:
    with pytest.raises(SpecError) as info:
        fn(*args)
    message = info.value.message
    assert "\n" not in message
    return message


# -- filters: accepted, and the C they become ----------------------------------------------

def test_filter_on_arguments_and_parameters_emits_register_reads():
    c, _ = emit("arg1 > 100 && size != 0", entry_scope())
    assert c == "((((u64)PT_REGS_PARM1(ctx)) > (100)) && (((u64)PT_REGS_PARM1(ctx)) != (0)))"


def test_precedence_follows_c():
    node = parse("1 + 2 * 3 == 7 || pid < 5", entry_scope())
    assert isinstance(node, expr.Binary) and node.op == "||"
    assert node.left.op == "==" and node.left.left.op == "+" and node.left.left.right.op == "*"


def test_numbers_hex_octal_suffixes_and_negatives():
    c, _ = emit("arg1 == 0x10 || arg1 == 010 || arg1 == 5UL || arg2 == -1", entry_scope())
    assert "(16)" in c and "(8)" in c and "(5)" in c and "(-1)" in c


def test_retval_and_latency_only_on_returns():
    c, e = emit("retval < 0 && $latency > 1000", return_scope())
    assert "((s64)PT_REGS_RC(ctx)) < (0)" in c
    assert "bpf_ktime_get_ns() - __entry.ts" in c and e.uses_latency
    assert "retval exists only on return probes" in error(parse, "retval < 0", entry_scope())
    assert "$latency exists only on return probes" in error(parse, "$latency", entry_scope())


def test_parameters_of_a_return_probe_are_recorded_at_entry():
    c, e = emit("$entry(size) + size", return_scope())
    assert e.entry_values == ["PT_REGS_PARM1(ctx)"]
    assert c == "(((u64)__entry.v[0]) + ((u64)__entry.v[0]))"


def test_tracepoint_fields_read_at_their_tracefs_offsets_with_their_types():
    c, _ = emit("args->dfd == -100", openat_scope())
    assert c == "(((s32)(*(u64 *)((char *)ctx + 16))) == (-100))"
    c, _ = emit("args->mode", openat_scope())
    assert c == "((u16)(*(u64 *)((char *)ctx + 40)))"


def test_string_compare_reads_two_bytes_more_than_the_literal_and_compares_words():
    c, e = emit('args->filename == "/tmp/x"', openat_scope())
    assert e.prelude[0].startswith("u64 __str1[1] = {}; ptk_read_user_str((char *)__str1, "
                                   "sizeof(__str1)")
    assert c == f"(__str1[0] == {int.from_bytes(b'/tmp/x', sys.byteorder)}ULL)"
    c, e = emit('args->filename == "/tmp/xy"', openat_scope())   # 8 bytes + 2: two words
    assert c == (f"(__str1[0] == {int.from_bytes(b'/tmp/xy', sys.byteorder)}ULL && "
                 "__str1[1] == 0ULL)") or "__str1[1] == 0ULL" in c


def test_kernel_strings_of_a_tracepoint_record_are_read_from_the_kernel():
    c, e = emit('args->filename != "x" && args->comm == "sh"', exec_scope())
    assert "bpf_probe_read_kernel_str" in e.prelude[0]
    assert "& 0xffff" in e.prelude[0]                 # __data_loc
    assert c.startswith("((!(__str")


def test_comm_compare_uses_the_current_comm():
    c, e = emit('comm == "workload"', entry_scope())
    assert "bpf_get_current_comm" in e.prelude[0]
    assert c == f"(__comm1[0] == {int.from_bytes(b'workload', sys.byteorder)}ULL && __comm1[1] == 0ULL)"
    c, _ = emit('comm == "0123456789abcdefg"', entry_scope())
    assert c == "(0)"                                 # longer than any comm


def test_strcmp_is_bcc_compatible():
    c, e = emit('STRCMP("abc", name)', entry_scope())
    assert c == f"(__str1[0] == {int.from_bytes(b'abc', sys.byteorder)}ULL)"
    assert "ptk_read_user_str" in e.prelude[0]


def test_casts_to_known_types():
    c, _ = emit("(u32)arg1 + (char)arg2", entry_scope())
    assert "((u32)((u64)PT_REGS_PARM1(ctx)))" in c and "((s8)((u64)PT_REGS_PARM2(ctx)))" in c


def test_usdt_arguments_are_read_once():
    scope = Scope.for_probe("usdt")
    c, e = emit("arg2 > 1 && arg2 < 9", scope)
    assert e.prelude == ["u64 __usdt_arg1 = 0; bpf_usdt_readarg(2, ctx, &__usdt_arg1);"]


# -- rejected: one line, pointing at the offending part -------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("arg1 > )", "filter: unexpected ')' at column 8: arg1 > )"),
    ("arg1 >", "filter: unexpected end of expression at column 7: arg1 >"),
    ("(arg1 > 1", "filter: expected ')' before the end at column 10: (arg1 > 1"),
    ("arg1 > 1)", "filter: unexpected ')' at column 9: arg1 > 1)"),
    ("arg1 = 5", "filter: assignment '=' is not allowed (use '==' to compare) at column 6: arg1 = 5"),
    ("sise > 10", "filter: unknown name 'sise' (known: size, name, arg1..arg6, cpu, gid, nsecs, "
                  "pid, tgid, tid, uid, comm) at column 1: sise > 10"),
])
def test_malformed_filters_point_at_the_problem(text, expected):
    assert error(parse_filter, text, entry_scope()) == expected


@pytest.mark.parametrize("text, column, words", [
    ('arg1 > 0; system("rm -rf /")', 9, "';'"),
    ("arg1 > 0) { return 1; } if (1", 11, "braces"),
    ("arg1 > 0) || (1", 9, "unexpected ')'"),
    ("{ return 0; }", 1, "braces"),
    ("arg1 += 1", 6, "assignment"),
    ("arg1++", 5, "'++'"),
    ("arg1 <<= 2", 6, "assignment"),
    ("#include <x>", 1, "preprocessor"),
    ("arg1 /* c */ > 0", 7, "unexpected '*'"),
    ("bpf_probe_write_user(arg1, arg2, 8)", 1, "function calls are not allowed"),
    ("system(\"id\")", 1, "function calls are not allowed"),
    ("ctx->di", 4, "'->' is not supported"),
    ("ctx", 1, "unknown name 'ctx'"),
    ("arg1 ? 1 : 0", 6, "?:"),
    ("args.x", 5, "member access"),
    ("'a' == arg1", 1, "character literals"),
    ('arg1 == "unterminated', 9, "unterminated string"),
    ("__builtin_memset", 1, "unknown name '__builtin_memset'"),
    ("arg1 @ 2", 6, "unexpected '@'"),
    ("arg1 \\ 2", 6, "unexpected '\\'"),
    ("arg1 / 0", 6, "division by zero"),
])
def test_c_injection_is_rejected(text, column, words):
    message = error(parse_filter, text, entry_scope())
    assert message.startswith("filter: ") and f"at column {column}: {text}" in message
    assert words in message


def test_type_errors_are_named():
    assert "'comm' is a string" in error(parse, "comm + 1", entry_scope())
    assert "compared with == or != to a string, not with '<'" in error(
        parse, 'name < "a"', entry_scope())
    assert "compares a string with a number" in error(parse, 'size == "x"', entry_scope())
    assert "a string is not a condition" in error(parse_filter, "comm", entry_scope())
    assert "arg7 is out of range" in error(parse, "arg7", entry_scope())
    assert "tracepoints have no arg1: use args->FIELD" in error(parse, "arg1", openat_scope())
    assert "has no field 'nope' (fields: __syscall_nr, dfd, filename, flags, mode)" in error(
        parse, "args->nope", openat_scope())
    assert "write args->flags" in error(parse, "flags", openat_scope())
    assert "args->FIELD exists only on tracepoints" in error(parse, "args->x", entry_scope())
    assert "$entry() takes a parameter name" in error(parse, "$entry(pid)", return_scope())
    assert "number '0x1ffffffffffffffff' does not fit" in error(
        parse, "arg1 == 0x1ffffffffffffffff", entry_scope())


def test_no_user_text_reaches_c_except_through_tables():
    # Identifiers in the emitted C come only from the tables in expr.py.
    c, e = emit('size > 3 && comm != "x;y{}" && name == "a\\"b"', entry_scope())
    text = c + "".join(e.prelude)
    assert ";y" not in c and "{}" not in c.replace("= {}", "")
    words = set(re.findall(r"\b[A-Za-z_]\w*", text))
    assert words <= {"u64", "PT_REGS_PARM1", "PT_REGS_PARM2", "ctx", "__comm1",
                     "bpf_get_current_comm", "sizeof", "__str2", "ULL",
                     "ptk_read_user_str", "char", "void"}


# -- types and signatures --------------------------------------------------------------------

def test_types_are_classified_not_pasted():
    assert parse_type("size_t") == expr.CType("int", 8, False)
    assert parse_type("int") == expr.CType("int", 4, True)
    assert parse_type("const char *") == expr.STR
    assert parse_type("char*") == expr.STR
    assert parse_type("struct file *").kind == "ptr"
    assert "unknown type 'strukt x'" in error(parse_type, "strukt x")
    assert "not a C type" in error(parse_type, "int; x")


def test_signatures():
    assert probegen.split_signature("c:malloc(size_t size)") == ("c:malloc", "size_t size")
    assert probegen.split_signature("t:sched:sched_switch") == ("t:sched:sched_switch", None)
    params = probegen.parse_signature("int fd, const void *buf, size_t count")
    assert [n for n, _ in params] == ["fd", "buf", "count"]
    assert "reserved" in error(probegen.parse_signature, "int pid")
    assert "appears twice" in error(probegen.parse_signature, "int a, int a")
    assert "is not 'TYPE NAME'" in error(probegen.parse_signature, "size")


# -- trace formats ---------------------------------------------------------------------------

def test_format_conversions_and_arguments_are_checked_against_each_other():
    fmt = parse_format("%d %s %-5x%%", "arg1, name, size", entry_scope())
    assert [c.conv for c in fmt.conversions] == ["d", "s", "x"]
    assert "2 conversions but 1 argument" in error(parse_format, "%d %s", "arg1", entry_scope())
    assert "1 conversion but 2 arguments" in error(parse_format, "%d", "arg1, arg2", entry_scope())
    assert "%s needs a string but argument 1 is a number" in error(
        parse_format, "%s", "size + 1", entry_scope())
    assert "%d needs a number but argument 1 is a string" in error(
        parse_format, "%d", "comm", entry_scope())
    assert "unknown conversion" in error(parse_format, "%q", "arg1", entry_scope())
    assert error(parse_format, "%d", "arg1 +", entry_scope()) == (
        "format arguments: unexpected end of expression at column 7: arg1 +")


def test_format_values_follow_printf():
    conv = parse_format("%d|%u|%x|%5s|%c|%p", "arg1, arg1, arg1, name, arg2, arg2",
                        entry_scope()).conversions
    s32 = expr.CType("int", 4, True)
    assert expr.format_value(conv[0], 0xffffffff, s32) == "-1"
    assert expr.format_value(conv[1], 0xffffffff, s32) == "4294967295"
    assert expr.format_value(conv[2], 255, expr.U64) == "ff"
    assert expr.format_value(conv[3], "ab", expr.STR) == "   ab"
    assert expr.format_value(conv[4], 65, expr.U64) == "A"
    assert expr.format_value(conv[5], 4096, expr.WORD) == "0x1000"


# -- the probe texts of trace and argdist ----------------------------------------------------

def test_trace_probe_text_is_split_into_its_parts():
    p = trace.split_probe('c:malloc(size_t size) (size > 1000) "size=%d\\n", size')
    assert (p.head, p.filter, p.format, p.args.strip()) == (
        "c:malloc(size_t size)", "size > 1000", "size=%d\n", "size")
    p = trace.split_probe("r::do_sys_open (retval < 0)")
    assert (p.head, p.filter, p.format) == ("r::do_sys_open", "retval < 0", None)
    p = trace.split_probe('t:syscalls:sys_enter_openat (args->filename == "a)b") "%s", '
                          'args->filename')
    assert p.filter == 'args->filename == "a)b"'
    assert "unterminated string" in error(trace.split_probe, 'c:open "%s, arg1')
    assert "'(' is never closed" in error(trace.split_probe, "c:open (arg1 > 1")
    assert "unexpected 'arg1'" in error(trace.split_probe, 'c:open "%s" arg1')


def test_argdist_spec_is_split_into_its_parts():
    s = argdist.split_spec('p:c:write(int fd, const void *buf, size_t count):size_t,int:'
                           'count,fd:fd==1 && comm == "a:b"#writes', "freq")
    assert (s.probe_text, s.signature, s.types, s.exprs, s.filter, s.label) == (
        "p:c:write", "int fd, const void *buf, size_t count", ["size_t", "int"], "count,fd",
        'fd==1 && comm == "a:b"', "writes")
    s = argdist.split_spec("r:c:malloc()", "hist")
    assert (s.probe_text, s.signature, s.types) == ("r:c:malloc", "", [])
    assert "types given but no expressions" in error(argdist.split_spec, "p:c:f(int a):int", "freq")
    assert "TYPE one of p r t u" in error(argdist.split_spec, "c:malloc", "freq")


def test_string_compares_that_would_overflow_the_bpf_stack_are_refused():
    scope = entry_scope()
    ok = " || ".join(f'name == "{"x" * 60}{i}"' for i in range(3))     # 3 x 64 bytes
    emit(ok, scope)
    too_many = " || ".join(f'name == "{"x" * 60}{i}"' for i in range(5))
    assert "need more than 256 bytes of BPF stack" in error(emit, too_many, scope)


def test_usdt_arguments_take_the_size_their_note_gives():
    scope = Scope.for_probe("usdt", usdt_args=(expr.S32, expr.WORD))
    c, e = emit("arg1 < 0 && arg2 != 0", scope)
    assert e.prelude == ["s32 __usdt_arg1 = 0; bpf_usdt_readarg(1, ctx, &__usdt_arg1);",
                         "u64 __usdt_arg2 = 0; bpf_usdt_readarg(2, ctx, &__usdt_arg2);"]
    assert "arg3 is out of range (arg1..arg2)" in error(parse, "arg3", scope)
    assert "this USDT probe has no arguments" in error(
        parse, "arg1", Scope.for_probe("usdt", usdt_args=()))
