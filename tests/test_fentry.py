"""Kernel functions through BPF trampolines (fentry/fexit), the fallback where
kprobes are missing.

These machines have neither (see ../shared/KERNEL.md): the kernel refuses to
load fentry programs. What runs everywhere: detection, resolution against the
kernel's BTF, the C every tool generates (compiled for real by BCC, which then
asks the kernel to load it), the one-line refusal, and the verifier's verdict
on each tool's programs loaded as BTF tracepoint programs (same context, same
helpers; see the end of this file). Where fentry loads, the same tools count
the workload's nanosleeps exactly; those tests skip here.
"""
import re

import pytest

from conftest import pytracekit, run_workload
from pytracekit.probes import specs as probes
from pytracekit.errors import NotFoundError, UsageError
from pytracekit.probes.expr import Scope, parse
from pytracekit.probes.expr_c import Emitter
from pytracekit.probes.specs import ResolvedProbe, parse_spec, program_defines, resolve

FENTRY = {"PYTRACEKIT_KERNEL_PROBES": "fentry"}
root = pytest.mark.root


def _fentry_loads() -> tuple[bool, str]:
    from pytracekit.kernel.features import fentry_available
    return fentry_available()


def fentry_probe(function="vfs_read", kind="kprobe", params=("file", "buf", "count", "pos")):
    return ResolvedProbe(kind, function, function, mechanism="fentry", params=params)


# -- pure: names, renames, the C of arguments ---------------------------------

@pytest.mark.parametrize("version, expected", [
    ("0.26.0", ("kfunc__", "kretfunc__")),
    ("0.27.1", ("kfunc__", "kretfunc__")),
    ("0.28.0", ("kfunc__vmlinux__", "kretfunc__vmlinux__")),
    ("0.31.0", ("kfunc__vmlinux__", "kretfunc__vmlinux__")),
    ("1.0", ("kfunc__vmlinux__", "kretfunc__vmlinux__")),
    ("unknown", ("kfunc__", "kretfunc__")),
])
def test_program_name_prefix_follows_the_bcc_release(version, expected):
    assert probes.fentry_prefixes(version) == expected


def test_fentry_programs_are_renamed_for_their_kernel_function(monkeypatch):
    monkeypatch.setattr(probes, "_fentry_prefixes", lambda: ("kfunc__", "kretfunc__"))
    entry, ret = fentry_probe(), fentry_probe().returning()
    uprobe = ResolvedProbe("uprobe", "malloc", "malloc", binary="/lib/libc.so.6")
    kprobe = ResolvedProbe("kprobe", "vfs_read", "vfs_read", mechanism="kprobe")
    assert ret.kind == "kretprobe" and ret.via_fentry and ret.params == entry.params
    assert program_defines([(entry, "on_entry"), (ret, "on_return"), (uprobe, "u"),
                            (kprobe, "k")]) == {"on_entry": "kfunc__vfs_read",
                                                "on_return": "kretfunc__vfs_read",
                                                "PTK_FENTRY": 1}
    assert program_defines([(uprobe, "u"), (kprobe, "k")]) == {}
    assert kprobe.program_name("k") == "k" and uprobe.program_name("u") == "u"


def test_one_bpf_function_per_kernel_function_and_direction(monkeypatch):
    monkeypatch.setattr(probes, "_fentry_prefixes", lambda: ("kfunc__", "kretfunc__"))
    with pytest.raises(UsageError, match="two probes on the entry of kernel function vfs_read"):
        program_defines([(fentry_probe(), "a"), (fentry_probe(), "b")])
    with pytest.raises(UsageError, match="BPF function a is attached to both kfunc__vfs_read and "
                                         "kfunc__vfs_write"):
        program_defines([(fentry_probe(), "a"), (fentry_probe("vfs_write"), "a")])
    # The same pair twice (a spec repeated) is one program.
    assert program_defines([(fentry_probe(), "a")] * 2) == {"a": "kfunc__vfs_read",
                                                             "PTK_FENTRY": 1}


class RecordingProgram:
    def __init__(self):
        self.calls = []

    def attach_fentry(self, function, fn_name, *, retprobe=False):
        self.calls.append(("fentry", function, fn_name, retprobe))


def test_attach_goes_through_the_trampoline_under_the_program_name(monkeypatch):
    monkeypatch.setattr(probes, "_fentry_prefixes", lambda: ("kfunc__", "kretfunc__"))
    prog = RecordingProgram()
    fentry_probe().attach(prog, "count_0")
    fentry_probe().returning().attach(prog, "count_1")
    assert prog.calls == [("fentry", "vfs_read", "kfunc__vfs_read", False),
                          ("fentry", "vfs_read", "kretfunc__vfs_read", True)]


def _c(text: str, kind: str = "entry", ctx_args: int | None = 4) -> tuple[str, Emitter]:
    scope = Scope(kind, user_memory=False, ctx_args=ctx_args)
    emitter = Emitter(scope, 80)
    return emitter.expr(parse(text, scope)), emitter


def test_arguments_and_return_value_come_from_the_context_array():
    assert _c("arg3")[0] == "((u64)(((u64 *)ctx)[2]))"
    assert _c("retval", "return")[0] == "((s64)((u64 *)ctx)[4])"
    # An fexit sees the saved arguments: nothing is recorded at entry for them.
    text, emitter = _c("arg1 + $entry(arg2)", "return")
    assert "((u64 *)ctx)[0]" in text and "((u64 *)ctx)[1]" in text
    assert emitter.entry_values == []
    # Registers on kprobes, as before.
    assert _c("arg3", ctx_args=None)[0] == "((u64)PT_REGS_PARM3(ctx))"


def test_argument_count_is_the_functions():
    from pytracekit.errors import SpecError
    with pytest.raises(SpecError, match=r"arg5 is out of range \(arg1\.\.arg4\)"):
        _c("arg5")
    with pytest.raises(SpecError, match=r"arg1: this function has no arguments"):
        _c("arg1", ctx_args=0)


def test_stacks_start_at_the_probed_function_not_in_the_trampoline():
    from pytracekit.model import Frame
    from pytracekit.collect.stack_maps import without_bpf_frames
    leaf_first = [Frame(n, "kernel") for n in (
        "bpf_prog_6deef7357e7b4530_kfunc__do_nanosleep", "bpf_trampoline_6442516224",
        "do_nanosleep", "hrtimer_nanosleep", "bpf_prog_x_in_the_middle", "do_syscall_64")]
    assert [f.name for f in without_bpf_frames(leaf_first)] == [
        "do_nanosleep", "hrtimer_nanosleep", "bpf_prog_x_in_the_middle", "do_syscall_64"]


def test_a_program_named_after_its_neighbour_is_still_the_observer():
    # kallsyms was read before the program was loaded: its address takes the
    # name of the symbol below it, bpf_dispatcher_xdp here or any other
    from pytracekit.model import Frame
    from pytracekit.collect.stack_maps import without_bpf_frames
    for misnamed in ("bpf_dispatcher_xdp", "ftrace_trampoline"):
        leaf_first = [Frame(n, "kernel") for n in (
            misnamed, "bpf_trace_run4", "__schedule", "schedule", "do_nanosleep")]
        assert [f.name for f in without_bpf_frames(leaf_first)] == [
            "__schedule", "schedule", "do_nanosleep"]


# -- detection and resolution against this kernel ---------------------------

def test_btf_names_a_kernel_functions_parameters():
    from pytracekit.kernel import btf
    if not btf.btf_available():
        pytest.skip("no kernel BTF")
    kernel = btf.vmlinux()
    assert kernel.function_params("vfs_read") == ("file", "buf", "count", "pos")
    assert kernel.function_params("schedule") == ()
    assert kernel.function_params("no_such_function_xyz") is None


@root
def test_detection_agrees_with_bcc_loading_an_fentry_program():
    """The bpf(2) check and a real KFUNC_PROBE through BCC must give one answer."""
    from pytracekit.errors import PytracekitError
    from pytracekit.engine.loader import Program
    ok, evidence = _fentry_loads()
    assert "do_nanosleep" in evidence
    text = '#include "vmlinux.h"\nKFUNC_PROBE(do_nanosleep)\n{\n    return 0;\n}\n'
    try:
        with Program.from_text("fentry_check", text):
            loaded, message = True, ""
    except PytracekitError as exc:
        loaded, message = False, exc.message
    assert loaded == ok, (evidence, message)
    if not ok:
        assert message.startswith("cannot attach fentry to kernel function do_nanosleep: ")


@root
def test_resolution_uses_btf_where_only_fentry_exists(monkeypatch):
    from pytracekit.kernel import features
    monkeypatch.setattr(features, "kprobes_available", lambda: (False, "faked"))
    monkeypatch.setattr(features, "fentry_available", lambda: (True, "faked"))
    [p] = resolve(parse_spec("r::vfs_read"))
    assert (p.kind, p.function, p.mechanism, p.params) == (
        "kretprobe", "vfs_read", "fentry", ("file", "buf", "count", "pos"))
    names = {p.name for p in resolve(parse_spec("vfs_rea*"))}
    assert {"vfs_read", "vfs_readv"} <= names and all(n.startswith("vfs_rea") for n in names)
    with pytest.raises(NotFoundError, match="no kernel function no_such_fn_xyz in the kernel's BTF"):
        resolve(parse_spec("no_such_fn_xyz"))
    with pytest.raises(NotFoundError, match=r"no kernel function matches 'zzq\*' \(searched the "
                                            "functions both in the kernel's BTF"):
        resolve(parse_spec("zzq*"))
    with pytest.raises(UsageError, match="fentry attaches at a function's entry only"):
        resolve(parse_spec("vfs_read+0x10"))


@root
def test_kprobes_come_first(monkeypatch):
    from pytracekit.kernel import features
    monkeypatch.setattr(features, "kprobes_available", lambda: (True, "faked"))
    monkeypatch.setattr(features, "fentry_available", lambda: (True, "faked"))
    [p] = resolve(parse_spec("vfs_read"))
    assert p.mechanism == "kprobe" and not p.via_fentry


def test_the_choice_can_be_forced_and_a_bad_one_is_named(monkeypatch):
    monkeypatch.setenv("PYTRACEKIT_KERNEL_PROBES", "fentry")
    assert probes.kernel_mechanism() == "fentry"
    monkeypatch.setenv("PYTRACEKIT_KERNEL_PROBES", "kprobes")
    with pytest.raises(UsageError, match="PYTRACEKIT_KERNEL_PROBES=kprobes: give auto, kprobe "
                                         "or fentry"):
        probes.kernel_mechanism()


# -- every tool that takes kernel functions, end to end ------------------------

# (tool arguments, what the tool prints for the workload's N nanosleeps)
TOOLS = {
    "funccount": (["do_nanosleep"], r"do_nanosleep\s+{n}\n"),
    "funclatency": (["-m", "do_nanosleep"], r"count: {n}\n"),
    "stackcount": (["-U", "do_nanosleep"], r"\n\s+sleeper\n\s+main\n(?:.*\n)*?\s+{n}\n"),
    "trace": (["do_nanosleep"], None),
    "argdist": (["-C", "p::do_nanosleep():u32:pid"], r"\t{n}\s+pid = \d+"),
}


@root
@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_each_tool_compiles_for_fentry_and_a_refusal_is_one_line(tool, workload):
    ok, evidence = _fentry_loads()
    if ok:
        pytest.skip("this kernel loads fentry programs: test_tools_count_exactly_through_fentry "
                    "covers it")
    args = TOOLS[tool][0]
    res = pytracekit(tool, "--verbose", *args, "--", workload, "sleep", "3", "1", env=FENTRY)
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 1, res.stderr
    # BCC compiled the generated C and bound the program to the function by its
    # name (else: "do_nanosleep is not found in vmlinux BTF"); the kernel said no.
    assert re.fullmatch(rf"pytracekit {tool}: error: cannot attach fentry(/fexit)? to kernel "
                        r"function do_nanosleep: the kernel refused to load it \(EPERM\) although "
                        r"this is root", lines[0]), res.stderr
    assert "not found in vmlinux BTF" not in res.stderr and "error:" not in "".join(lines[1:])
    assert not re.search(r"Traceback", res.stderr)


@root
def test_return_probes_pair_fentry_with_fexit():
    res = pytracekit("funclatency", "--ebpf", "do_nanosleep", env=FENTRY)
    assert res.returncode == 0, res.stderr
    assert re.search(r"^#define latency_entry_0 kfunc__(vmlinux__)?do_nanosleep$", res.stdout, re.M)
    assert re.search(r"^#define latency_return_0 kretfunc__(vmlinux__)?do_nanosleep$", res.stdout,
                     re.M)
    res = pytracekit("trace", "--ebpf", 'r::vfs_read (retval > 0) "%d %d", arg3, retval',
                     env=FENTRY)
    assert res.returncode == 0, res.stderr
    assert "((u64 *)ctx)[2]" in res.stdout and "((u64 *)ctx)[4]" in res.stdout
    assert "kfunc__" not in res.stdout.replace("kretfunc__", "")   # no entry program needed


@root
@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_tools_count_exactly_through_fentry(tool, workload):
    ok, evidence = _fentry_loads()
    if not ok:
        pytest.skip(f"this kernel refuses fentry programs: {evidence}")
    n = 7
    args, pattern = TOOLS[tool]
    res = pytracekit(tool, *args, "--", workload, "sleep", str(n), "1", env=FENTRY)
    assert res.returncode == 0, res.stderr
    if tool == "trace":
        assert len([line for line in res.stdout.splitlines() if "do_nanosleep" in line]) == n
    else:
        assert re.search(pattern.format(n=n), res.stdout), res.stdout
    assert run_workload(workload, "sleep", "1", "1").returncode == 0


# -- the verifier's word on the generated programs, where fentry cannot load ----
#
# A BTF tracepoint (tp_btf) program is a tracing program like fentry: the same
# context (an array of u64 arguments, checked against BTF), the same helpers.
# It loads here. So each tool's fentry program, compiled by BCC under a name BCC
# does not bind, is loaded as a tp_btf program on mm_page_alloc, whose arguments
# have do_nanosleep's shape: (struct page *, unsigned int, ...) for
# (struct hrtimer_sleeper *, enum hrtimer_mode) and an int where fexit finds
# the return value.

SHAPE_TRACEPOINT = "btf_trace_mm_page_alloc"
VERIFIED = {
    "funccount": ["do_nanosleep"],
    "funclatency": ["-u", "do_nanosleep"],
    # --no-python: the Python walk's bpf_loop callback is linked by pytracekit's
    # loader (engine/bpfloop.py), not in the raw tp_btf load below
    "stackcount": ["-U", "--no-python", "do_nanosleep"],
    "trace": ["-U", 'do_nanosleep (arg2 < 10 && pid != 0) "mode %d", arg2',
              'r::do_nanosleep (retval == 0) "ret %d", retval'],
    "argdist": ["-H", "r::do_nanosleep():u64:$latency"],
    "tcpretrans": ["-l"],     # hand-written: PTK_FUNC_ARG in bpf/tcpretrans.bpf.c
}


def _load_as_btf_tracepoint(code: bytes, type_id: int, log_level: int = 4) -> tuple[int, str]:
    """Load as tp_btf: log level 4 (BPF_LOG_STATS) gives just "processed N
    insns"; level 1 the verifier's reasons (its trace of a ~1M-insn program
    overflows any log buffer: ENOSPC)."""
    import ctypes
    import os
    import struct
    libc = ctypes.CDLL(None, use_errno=True)
    insns = ctypes.create_string_buffer(code, len(code))
    license = ctypes.create_string_buffer(b"GPL")
    log = ctypes.create_string_buffer(1 << 20)
    attr = (ctypes.c_char * 128)()
    struct.pack_into("IIQQIIQ", attr, 0, 26, len(code) // 8, ctypes.addressof(insns),
                     ctypes.addressof(license), log_level, len(log), ctypes.addressof(log))
    struct.pack_into("I", attr, 68, 23)            # BPF_TRACE_RAW_TP
    struct.pack_into("I", attr, 108, type_id)
    fd = libc.syscall(321, 5, attr, ctypes.sizeof(attr))
    err = ctypes.get_errno()
    text = log.value.decode(errors="replace")
    return fd, text if fd >= 0 else f"{os.strerror(err)}: {text[-1500:]}"


@root
@pytest.mark.parametrize("tool", sorted(VERIFIED))
def test_generated_fentry_programs_pass_the_tracing_verifier(tool, monkeypatch, capsys):
    import os
    import platform
    from pytracekit.cli import command as cli
    from pytracekit.kernel import btf
    from pytracekit.engine.loader import Program
    if platform.machine() != "x86_64":
        pytest.skip("the raw bpf(2) load here uses x86-64's syscall number")
    type_ids = btf.vmlinux().by_name.get(SHAPE_TRACEPOINT)
    if not type_ids:
        pytest.skip(f"{SHAPE_TRACEPOINT} is not in this kernel's BTF")
    verdicts = []

    def verify(self, function, fn_name, *, retprobe=False):
        code = self.bpf.dump_func(fn_name)
        fd, log = _load_as_btf_tracepoint(code, type_ids[0])
        if fd < 0:   # again, for the verifier's reasons
            fd, log = _load_as_btf_tracepoint(code, type_ids[0], log_level=1)
        verdicts.append((fn_name, fd >= 0, log))
        if fd >= 0:
            os.close(fd)

    monkeypatch.setenv("PYTRACEKIT_KERNEL_PROBES", "fentry")
    monkeypatch.setattr(probes, "_fentry_prefixes", lambda: ("ptkcheck_entry__",
                                                             "ptkcheck_exit__"))
    monkeypatch.setattr(Program, "attach_fentry", verify)
    status = cli.main([tool, "--dry-run", *VERIFIED[tool]])
    assert status == 0, capsys.readouterr().err
    expected = {"funccount": 1, "funclatency": 2, "stackcount": 1, "trace": 2, "argdist": 2,
                "tcpretrans": 1}
    assert len(verdicts) == expected[tool], verdicts
    for fn_name, ok, log in verdicts:
        assert ok, f"{fn_name}: {log}"
        assert "processed" in log


@root
@pytest.mark.parametrize("fentry", [0, 1])
def test_ptk_func_arg_compiles_for_both_mechanisms(fentry):
    """Hand-written C reads kernel function arguments with PTK_FUNC_ARG; both of
    its expansions compile (nothing is loaded: the function is not bound)."""
    from pytracekit.engine.loader import Program
    text = ('#include "vmlinux.h"\n#include "pytracekit.h"\n'
            "int on_call(void *ctx)\n{\n"
            "    struct sock *sk = (struct sock *)PTK_FUNC_ARG(ctx, 1);\n"
            "    u64 size = PTK_FUNC_ARG(ctx, 3);\n"
            "    return sk && size > 1;\n}\n")
    with Program.from_text("func_arg", text, {"PTK_FENTRY": fentry}) as prog:
        assert b"on_call" not in (prog.bpf.funcs or {})
        assert len(prog.bpf.dump_func("on_call")) > 0
