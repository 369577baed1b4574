"""Probe specs: every form and malformed form parsed without root; resolution
against the real workload binary, libc, tracefs and USDT notes as root."""
import os

import pytest

from pytracekit.errors import NotFoundError, NotSupportedError, SpecError, UsageError
from pytracekit.probes.specs import ProbeSpec, parse_spec, resolve, resolve_all


@pytest.mark.parametrize("text, expected", [
    ("vfs_read", ProbeSpec("kprobe", "", "vfs_read", text="vfs_read")),
    ("p::vfs_read", ProbeSpec("kprobe", "", "vfs_read", text="p::vfs_read")),
    ("r::vfs_read", ProbeSpec("kretprobe", "", "vfs_read", text="r::vfs_read")),
    ("vfs_read+0x10", ProbeSpec("kprobe", "", "vfs_read", offset=16, text="vfs_read+0x10")),
    ("c:malloc", ProbeSpec("uprobe", "c", "malloc", text="c:malloc")),
    ("p:c:malloc", ProbeSpec("uprobe", "c", "malloc", text="p:c:malloc")),
    ("r:c:malloc", ProbeSpec("uretprobe", "c", "malloc", text="r:c:malloc")),
    ("/usr/bin/bash:readline", ProbeSpec("uprobe", "/usr/bin/bash", "readline",
                                          text="/usr/bin/bash:readline")),
    ("p:/bin/x:main+12", ProbeSpec("uprobe", "/bin/x", "main", offset=12, text="p:/bin/x:main+12")),
    ("c:mall*", ProbeSpec("uprobe", "c", "mall*", text="c:mall*")),
    ("c:str?cmp", ProbeSpec("uprobe", "c", "str?cmp", text="c:str?cmp")),
    ("t:syscalls:sys_enter_openat",
     ProbeSpec("tracepoint", "", "sys_enter_openat", "syscalls", text="t:syscalls:sys_enter_openat")),
    ("t:sched:*", ProbeSpec("tracepoint", "", "*", "sched", text="t:sched:*")),
    ("u:/usr/bin/python3:function__entry",
     ProbeSpec("usdt", "/usr/bin/python3", "function__entry", text="u:/usr/bin/python3:function__entry")),
    ("u:python3:python:gc__start",
     ProbeSpec("usdt", "python3", "python:gc__start", text="u:python3:python:gc__start")),
    ("malloc@@GLIBC_2.2.5", ProbeSpec("kprobe", "", "malloc@@GLIBC_2.2.5", text="malloc@@GLIBC_2.2.5")),
])
def test_every_form_parses(text, expected):
    assert parse_spec(text) == expected


def test_default_kind_r_makes_return_probes():
    assert parse_spec("c:malloc", default_kind="r").kind == "uretprobe"
    assert parse_spec("vfs_read", default_kind="r").kind == "kretprobe"
    assert parse_spec("p:c:malloc", default_kind="r").kind == "uprobe"


def test_regex_specs_keep_the_expression():
    spec = parse_spec("c:^mall.*c$", regex=True)
    assert (spec.kind, spec.function, spec.regex, spec.is_pattern) == ("uprobe", "^mall.*c$", True, True)
    assert parse_spec("t:sched:sched_wak.*", regex=True).category == "sched"


def test_returning_pairs_entry_with_return():
    assert parse_spec("c:malloc").returning().kind == "uretprobe"
    assert parse_spec("vfs_read").returning().kind == "kretprobe"


@pytest.mark.parametrize("text, words", [
    ("", "empty probe spec"),
    ("   ", "empty probe spec"),
    ("p:malloc", "a 'p:' probe needs another field"),
    ("t:sched", "write t:CATEGORY:EVENT"),
    ("u:probe", "write u:LIB:PROBE"),
    ("x:c:malloc", "unknown probe type 'x'"),
    ("t::sched_switch", "tracepoint category is empty"),
    ("t:sched:", "tracepoint event is empty"),
    ("t:sched:sched switch", "not a tracepoint event name"),
    ("t:sched:sched_switch+4", "tracepoints take no offset"),
    ("p:c:", "no function name"),
    ("c:mal loc", "not a function name (at 'mal loc')"),
    ("c:malloc+", "the offset is not a number"),
    ("c:malloc+zz", "the offset is not a number (write FUNC+0x10 or FUNC+16) (at '+zz')"),
    ("r:c:malloc+4", "an offset makes no sense on a return probe"),
    ("c:mall*+4", "wildcards cannot take an offset"),
    ("a:b:c:d", "too many ':' fields"),
    ("u::probe", "a USDT probe needs the binary"),
    ("u:lib:", "no USDT probe name"),
    ("u:lib:pro be", "not a USDT probe name"),
    (":malloc", "the library before ':' is empty"),
    ("c:1abc", "not a function name"),
])
def test_malformed_specs_are_one_line_errors(text, words):
    with pytest.raises(SpecError) as info:
        parse_spec(text)
    assert words in info.value.message
    assert "\n" not in info.value.message
    assert info.value.exit_status == 2


def test_bad_regex_points_at_it():
    with pytest.raises(SpecError) as info:
        parse_spec("c:mal(loc", regex=True)
    assert "invalid regular expression" in info.value.message
    assert "(at 'mal(loc')" in info.value.message


# -- resolution (reads the system; tracefs needs root) -----------------------

root = pytest.mark.root


@root
def test_workload_function_resolves_to_the_binary(workload):
    probes = resolve(parse_spec(f"{workload}:counted_function"))
    assert len(probes) == 1
    p = probes[0]
    assert (p.kind, p.name, p.binary) == ("uprobe", "counted_function", os.path.abspath(workload))
    assert p.address > 0


@root
def test_wildcard_expands_against_elf_symbols(workload):
    names = sorted(p.name for p in resolve(parse_spec(f"{workload}:stack_*")))
    assert names == ["stack_leaf", "stack_path_a", "stack_path_b"]
    names = sorted(p.name for p in resolve(parse_spec(f"{workload}:stack_path_[ab]", regex=True)))
    assert names == ["stack_path_a", "stack_path_b"]


@root
def test_library_names_resolve_like_the_dynamic_linker():
    p = resolve(parse_spec("c:malloc"))[0]
    assert os.path.basename(p.binary).startswith("libc.so")
    assert p.name == "malloc"
    # aliases at one address are one probe, named as people call it
    names = [q.name for q in resolve(parse_spec("c:*malloc"))]
    assert "malloc" in names and "__libc_malloc" not in names


@root
def test_library_resolution_through_a_pid():
    p = resolve(parse_spec("c:free"), pid=os.getpid())[0]
    maps = open(f"/proc/{os.getpid()}/maps").read()
    assert p.binary in maps


@root
def test_tracepoints_resolve_and_expand():
    [p] = resolve(parse_spec("t:syscalls:sys_enter_openat"))
    assert (p.kind, p.category, p.function, p.name) == (
        "tracepoint", "syscalls", "sys_enter_openat", "syscalls:sys_enter_openat")
    names = {p.name for p in resolve(parse_spec("t:syscalls:sys_*_openat"))}
    assert names == {"syscalls:sys_enter_openat", "syscalls:sys_exit_openat"}


@root
def test_usdt_probes_resolve_from_notes():
    [p] = resolve(parse_spec("u:/usr/bin/python3.11:function__entry"))
    assert (p.kind, p.function, p.binary) == ("usdt", "python:function__entry", "/usr/bin/python3.11")
    assert p.semaphore            # Python's probes are guarded by is-enabled semaphores


def test_entry_and_return_twins():
    from pytracekit.probes.specs import ResolvedProbe
    entry = ResolvedProbe("uprobe", "malloc", "malloc", binary="/lib/libc.so.6")
    assert entry.returning().kind == "uretprobe"
    assert entry.returning().entry() == entry
    tp = ResolvedProbe("tracepoint", "a:b", "b", category="a")
    assert tp.entry() == tp.returning() == tp


@root
def test_kernel_function_names_missing_feature_and_suggests_tracepoints():
    with pytest.raises(NotSupportedError) as info:
        resolve(parse_spec("vfs_read"))
    msg = info.value.message
    assert "\n" not in msg
    assert "no kprobes" in msg and "no fentry" in msg
    assert "t:syscalls:sys_enter_read" in msg and "t:syscalls:sys_exit_read" in msg
    for name in ("ksys_read", "__x64_sys_read"):
        with pytest.raises(NotSupportedError) as info:
            resolve(parse_spec(f"r::{name}"))
        assert "t:syscalls:sys_enter_read" in info.value.message
    with pytest.raises(NotSupportedError) as info:
        resolve(parse_spec("do_sys_open"))
    assert "t:syscalls:sys_enter_openat" in info.value.message


@root
def test_resolution_errors_name_what_was_searched(workload):
    with pytest.raises(NotFoundError, match=r"no function in .*workload matches 'nothing_\*'"):
        resolve(parse_spec(f"{workload}:nothing_*"))
    with pytest.raises(NotFoundError, match=r"no function no_such_fn in .*workload"):
        resolve(parse_spec(f"{workload}:no_such_fn"))
    with pytest.raises(NotFoundError, match="no such binary or library: /no/such/binary"):
        resolve(parse_spec("/no/such/binary:main"))
    with pytest.raises(NotFoundError, match="no library or executable named 'nosuchlib'"):
        resolve(parse_spec("nosuchlib:main"))
    with pytest.raises(NotFoundError, match="unknown tracepoint sched:sched_swich"):
        resolve(parse_spec("t:sched:sched_swich"))
    with pytest.raises(NotFoundError, match="no tracepoint matches 't:nosuch:\\*'"):
        resolve(parse_spec("t:nosuch:*"))
    with pytest.raises(NotFoundError, match="no USDT probe 'nosuch'"):
        resolve(parse_spec("u:/usr/bin/python3.11:nosuch"))


@root
def test_more_matches_than_the_limit_is_a_usage_error():
    with pytest.raises(UsageError, match=r"matches \d+ probes, more than the limit of 5"):
        resolve(parse_spec("t:syscalls:*"), limit=5)


@root
def test_resolve_all_drops_duplicates(workload):
    specs = [parse_spec(f"{workload}:counted_function"), parse_spec(f"{workload}:counted_*")]
    assert [p.name for p in resolve_all(specs)] == ["counted_function"]


# -- the kprobe path, on kernels that have kprobes (detection faked here) ----

class FakeProgram:
    def __init__(self):
        self.calls = []

    def attach_kprobe(self, function, fn_name, *, retprobe=False):
        self.calls.append(("kprobe", function, fn_name, retprobe))

    def attach_uprobe(self, binary, fn_name, **kw):
        self.calls.append(("uprobe", binary, fn_name, kw))

    def attach_tracepoint(self, category, event, fn_name):
        self.calls.append(("tracepoint", category, event, fn_name))


@root
def test_kernel_functions_resolve_where_kprobes_exist(monkeypatch):
    from pytracekit.kernel import features
    monkeypatch.setattr(features, "kprobes_available", lambda: (True, "faked"))
    [p] = resolve(parse_spec("r::vfs_read"))
    assert (p.kind, p.function) == ("kretprobe", "vfs_read")
    names = {p.name for p in resolve(parse_spec("vfs_rea*"))}
    assert "vfs_read" in names and all(n.startswith("vfs_rea") for n in names)
    prog = FakeProgram()
    p.attach(prog, "fn")
    assert prog.calls == [("kprobe", "vfs_read", "fn", True)]


def test_attach_dispatches_by_kind():
    from pytracekit.probes.specs import ResolvedProbe
    prog = FakeProgram()
    ResolvedProbe("uretprobe", "malloc", "malloc", binary="/lib/libc.so.6").attach(prog, "r", pid=7)
    ResolvedProbe("tracepoint", "sched:sched_switch", "sched_switch",
                  category="sched").attach(prog, "t")
    assert prog.calls == [
        ("uprobe", "/lib/libc.so.6", "r", {"symbol": "malloc", "offset": 0, "retprobe": True,
                                            "pid": 7}),
        ("tracepoint", "sched", "sched_switch", "t")]
