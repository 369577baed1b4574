"""What BCC's compiler does besides compiling: its front end looks up kernel symbols in
/proc/kallsyms (bcc_symcache_resolve_name) once per compile, and once more for every call
it sees named bpf_probe_read_user or bpf_probe_read_user_str, each rebuilding a table
of all kernel symbols (60-140 ms of CPU). bpf/pytracekit.h renames those calls, so a
program's compile costs one lookup however many user reads it makes. Counted for real:
funccount on libbcc's resolver, over a command that compiles such a program."""
import os
import re
import sys
import uuid

import pytest

from conftest import pytracekit
from pytracekit.engine.loader import BPF_DIR, expand_source

LIBBCC = os.path.realpath("/usr/lib/x86_64-linux-gnu/libbcc.so.0")
READS = 6
# six user reads, by both helpers' usual names; a comment unique to the run keeps the
# program cache from serving it
PROGRAM = r'''
#include "vmlinux.h"
#include "pytracekit.h"
TRACEPOINT_PROBE(syscalls, sys_enter_openat) {
    char path[16]; u64 word = 0;
    bpf_probe_read_user_str(path, sizeof(path), args->filename);
    bpf_probe_read_user(&word, sizeof(word), args->filename);
    bpf_probe_read_user(&word, 4, args->filename + 8);
    bpf_probe_read_user_str(path, 8, args->filename + 1);
    bpf_probe_read_user(&word, 2, args->filename + 2);
    bpf_probe_read_user(&word, 1, args->filename + 3);
    return path[0] + word;
}
// '''


def lookups_compiling(program: str, tmp_path) -> int:
    """How many times BCC's resolver runs while a command compiles `program`."""
    script = tmp_path / f"compile-{uuid.uuid4().hex}.py"
    script.write_text("from pytracekit.engine.loader import Program\n"
                      f"Program.from_text('reads', {program + uuid.uuid4().hex!r})\n")
    res = pytracekit("funccount", f"{LIBBCC}:bcc_symcache_resolve_name", "--",
                     sys.executable, str(script))
    assert res.returncode == 0, res.stderr
    counts = dict(line.split() for line in res.stdout.strip().splitlines()[1:])
    return int(counts["bcc_symcache_resolve_name"])


@pytest.mark.root
def test_user_reads_add_no_kallsyms_lookup_to_a_compile(tmp_path):
    if not os.path.exists(LIBBCC):
        pytest.skip(f"no {LIBBCC}: BCC is not installed from Debian's package")
    assert PROGRAM.count("bpf_probe_read_user") == READS
    # the same program without its reads: BCC's own lookup (its front end checks
    # for bpf_probe_read_kernel once per compile)
    assert lookups_compiling(re.sub(r"\n    bpf_probe_read_user.*", "", PROGRAM), tmp_path) == 1
    assert lookups_compiling(PROGRAM, tmp_path) == 1


@pytest.mark.parametrize("path", sorted(BPF_DIR.glob("*.bpf.c")), ids=lambda p: p.name)
def test_every_program_renames_the_user_reads_before_its_first(path):
    """What the test above shows for one program holds for each of bpf/: the common
    header's macros come before any call of the two helpers (no root needed)."""
    code = re.sub(r"/\*.*?\*/|//[^\n]*", "", expand_source(path.read_text()), flags=re.S)
    calls = [m.start() for m in re.finditer(r"\bbpf_probe_read_user(_str)?\s*\(", code)]
    if calls:
        renamed = code.index("#define bpf_probe_read_user_str ptk_probe_read_user_str")
        assert renamed < min(calls)
