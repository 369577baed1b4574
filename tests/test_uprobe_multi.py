"""uprobe_multi links: ELF file offsets as BCC computes them, the raw
BPF_LINK_CREATE, and loader.Program.attach_uprobe_multi counting exact calls
of the workload with per-offset cookies, then leaving nothing behind."""
import errno
import os
import subprocess

import pytest

from conftest import pytracekit_probes_left
from probe_helpers import open_fds
from pytracekit.symbolize import elf
from pytracekit.errors import NotFoundError, PytracekitError
from pytracekit.kernel import bpfsys, features

LIBC = "/lib/x86_64-linux-gnu/libc.so.6"
# Non-PIE, so its code segment's addresses differ from its file offsets.
PYTHON = "/usr/bin/python3.11"

COUNTER = r'''
#include "vmlinux.h"
#include "pytracekit.h"
BPF_ARRAY(hits, u64, 4);
int count_cookie(void *ctx) {
    u32 key = bpf_get_attach_cookie(ctx);
    u64 *n = hits.lookup(&key);
    if (n)
        __sync_fetch_and_add(n, 1);
    return 0;
}
'''


@pytest.mark.root
@pytest.mark.parametrize("binary,step", [("workload", 1), (LIBC, 37), (PYTHON, 61)])
def test_file_offsets_are_those_bcc_attaches_at(binary, step, workload):
    import bcc
    path = workload if binary == "workload" else binary
    if not os.path.exists(path):
        pytest.skip(f"no {path}")
    symbols = elf.functions(path)[::step]
    assert len(symbols) >= 20
    for symbol in symbols:
        _path, bcc_offset = bcc.BPF._check_path_symbol(path.encode(), symbol.name.encode(), 0, -1, 0)
        assert elf.file_offset(path, symbol.address) == bcc_offset, symbol


def test_python_text_segment_is_not_at_its_address():
    """So the test above does check the conversion, not the identity."""
    if not os.path.exists(PYTHON):
        pytest.skip(f"no {PYTHON}")
    assert any(vaddr != offset for vaddr, _size, offset in elf.load_segments(PYTHON))


def test_an_address_outside_the_file_is_an_error(workload):
    with pytest.raises(NotFoundError, match="no loadable segment"):
        elf.file_offset(workload, 0xFFFF_FFFF)


@pytest.mark.root
def test_uprobe_multi_is_available_on_6_6_and_later():
    release = tuple(int(x) for x in os.uname().release.split(".")[:2])
    ok, why = features.uprobe_multi_available()
    assert ok == (release >= (6, 6)), why


@pytest.mark.root
def test_link_create_refuses_a_program_not_loaded_for_uprobe_multi(workload):
    """expected_attach_type matters: what BCC's load_func(attach_type=) must pass."""
    from pytracekit.engine.loader import Program
    symbol = next(s for s in elf.functions(workload) if s.name == "counted_function")
    with Program.from_text("plain", COUNTER) as prog:
        import bcc
        fn = prog.bpf.load_func("count_cookie", bcc.BPF.KPROBE)   # no attach type
        fd, err = bpfsys.link_create_uprobe_multi(fn.fd, workload,
                                                  [elf.file_offset(workload, symbol.address)], [0])
        assert fd < 0 and err == errno.EINVAL


@pytest.mark.root
def test_one_link_counts_each_offset_under_its_cookie(workload):
    from pytracekit.engine.loader import Program, Probe
    names = {s.name: s for s in elf.functions(workload)}
    wanted = ["stack_leaf", "stack_path_a", "stack_path_b"]
    offsets = [elf.file_offset(workload, names[n].address) for n in wanted]
    links_before = open_fds("anon_inode:bpf_link")
    with Program.from_text("multi", COUNTER) as prog:
        prog.attach_uprobe_multi(workload, "count_cookie", offsets, [0, 1, 2], names=wanted)
        assert prog.probes == [Probe("uprobe_multi", f"{workload}:{n}", "count_cookie")
                               for n in wanted]
        assert open_fds("anon_inode:bpf_link") == links_before + 1
        subprocess.run([workload, "stacks", "4"], check=True)
        hits = prog["hits"]
        assert [hits[hits.Key(i)].value for i in range(4)] == [12, 4, 8, 0]
    assert open_fds("anon_inode:bpf_link") == links_before
    assert pytracekit_probes_left() == []


@pytest.mark.root
def test_the_pid_filter_counts_only_that_process(workload):
    from pytracekit.engine.loader import Program
    symbol = next(s for s in elf.functions(workload) if s.name == "counted_function")
    offset = elf.file_offset(workload, symbol.address)
    other = subprocess.Popen(["sleep", "30"])
    try:
        with Program.from_text("multi", COUNTER) as prog:
            prog.attach_uprobe_multi(workload, "count_cookie", [offset], [3], pid=other.pid)
            subprocess.run([workload, "calls", "50"], check=True)
            hits = prog["hits"]
            assert hits[hits.Key(3)].value == 0
    finally:
        other.kill()
        other.wait()


@pytest.mark.root
def test_attach_errors_are_one_line(workload):
    from pytracekit.engine.loader import Program
    with Program.from_text("multi", COUNTER) as prog:
        with pytest.raises(NotFoundError) as missing:
            prog.attach_uprobe_multi("/no/such/binary", "count_cookie", [0x1000], [0])
        assert "\n" not in missing.value.message and "/no/such/binary" in missing.value.message
    with Program.from_text("multi", COUNTER) as prog:
        import bcc
        prog.bpf.load_func("count_cookie", bcc.BPF.KPROBE)
        with pytest.raises(PytracekitError, match="already loaded"):
            prog.attach_uprobe_multi(workload, "count_cookie", [0x1000], [0])


COUNT_ONE = r'''
#include "vmlinux.h"
#include "pytracekit.h"
BPF_ARRAY(hits, u64, 1);
int count_one(void *ctx) {
    u32 key = 0;
    u64 *n = hits.lookup(&key);
    if (n)
        __sync_fetch_and_add(n, 1);
    return 0;
}
'''


@pytest.mark.root
def test_a_bcc_uprobe_and_a_link_share_a_function(workload):
    """BCC 0.26 passes libbcc a garbage ref_ctr_offset (iovisor/bcc#5236);
    the kernel refuses a second uprobe at one offset with a different value
    (the link's is 0), so the loader makes BCC pass 0 too."""
    from bcc import libbcc
    from pytracekit.engine.loader import Program
    symbol = next(s for s in elf.functions(workload) if s.name == "counted_function")
    with Program.from_text("multi", COUNTER) as linked, Program.from_text("one", COUNT_ONE) as one:
        assert getattr(libbcc.lib.bpf_attach_uprobe, "_ptk_fixed", False)
        linked.attach_uprobe_multi(workload, "count_cookie",
                                   [elf.file_offset(workload, symbol.address)], [1])
        one.attach_uprobe(workload, "count_one", symbol="counted_function")
        subprocess.run([workload, "calls", "25"], check=True)
        assert linked["hits"][linked["hits"].Key(1)].value == 25
        assert one["hits"][one["hits"].Key(0)].value == 25
