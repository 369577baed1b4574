"""BCC's failures, classified by step and errno (loader.BccFailure), each
caused for real and turned into the one error a user sees."""
import ctypes
import errno

import pytest

from pytracekit.errors import NotFoundError, PytracekitError, VerifierError
from pytracekit.engine.loader import BccFailure, Program

# `unchecked` dereferences a map lookup without the NULL check the verifier demands.
PROGRAM = r'''
#include "vmlinux.h"
BPF_HASH(counts, int, u64, 1);

int fine(void *ctx) { return 0; }

int unchecked(void *ctx) {
    int zero = 0;
    u64 *value = counts.lookup(&zero);
    return *value;
}
'''

REJECTED_AT_COMPILE = r'''
#include "vmlinux.h"
BPF_HASH(counts, int, u64, 1);

TRACEPOINT_PROBE(syscalls, sys_enter_getpid) {
    int zero = 0;
    u64 *value = counts.lookup(&zero);
    return *value;
}
'''


def _raised(call) -> PytracekitError:
    with pytest.raises(PytracekitError) as info:
        call()
    return info.value


@pytest.mark.root
@pytest.mark.parametrize("loaded_by", ["bcc", "program cache"])
def test_attach_failures_are_classified_by_step_and_errno(workload, loaded_by, monkeypatch):
    """The same through BCC's loader and through the program cache's (progcache)."""
    from pytracekit.engine import progcache
    if loaded_by == "bcc":
        monkeypatch.setenv(progcache.DISABLE_ENV, "1")
    else:
        monkeypatch.delenv(progcache.DISABLE_ENV, raising=False)
        Program.from_text("bcc_errors", PROGRAM).close()   # stored: the next one is a hit
    with Program.from_text("bcc_errors", PROGRAM) as prog:
        from_cache = type(prog.bpf).__name__ == "CachedBPF"
        assert from_cache == (loaded_by == "program cache")
        # bpf(BPF_RAW_TRACEPOINT_OPEN) fails with ENOENT; BCC's words say only "failed"
        err = _raised(lambda: prog.attach_raw_tracepoint("no_such_event_xyz", "fine"))
        assert type(err) is NotFoundError
        assert err.message == ("cannot attach raw_tracepoint no_such_event_xyz: Failed to attach "
                               "BPF to raw tracepoint: No such file or directory (ENOENT)")

        err = _raised(lambda: prog.attach_uprobe(workload, "fine", symbol="no_such_function"))
        assert type(err) is NotFoundError
        assert err.message == (f"cannot attach uprobe {workload}:no_such_function: no such "
                               "function in that binary (`pytracekit list -x BINARY` lists them)")

        err = _raised(lambda: prog.attach_uprobe("/no/such/binary", "fine", symbol="main"))
        assert type(err) is NotFoundError
        assert err.message == "cannot attach uprobe /no/such/binary:main: no such binary /no/such/binary"

        # BCC loads a function when it first attaches it: the verifier's EACCES, and its log
        err = _raised(lambda: prog.attach_uprobe(workload, "unchecked", symbol="main"))
        assert type(err) is VerifierError
        assert err.message.startswith(f"cannot attach uprobe {workload}:main: ")
        assert "map_value_or_null" in err.detail

        # libbcc refuses the config itself, with no system call and so no errno:
        # none is made up (an earlier failure's ENOENT is not this one's)
        err = _raised(lambda: prog.attach_perf_event(1, 99999, "fine", sample_period=1))
        assert type(err) is PytracekitError
        assert err.message == "cannot attach perf_event 1:99999: Failed to attach BPF to perf event"
        assert prog.probes == []


@pytest.mark.root
def test_a_verifier_rejection_while_compiling_names_the_program():
    """TRACEPOINT_PROBE functions are loaded by BPF() itself."""
    err = _raised(lambda: Program.from_text("rejected_at_load", REJECTED_AT_COMPILE))
    assert type(err) is VerifierError
    assert err.message.startswith("the kernel verifier rejected rejected_at_load: ")
    assert err.message.endswith(" (--verbose shows the log)")
    assert "map_value_or_null" in err.detail


def test_the_step_comes_from_bccs_words_and_the_cause_from_errno():
    ctypes.set_errno(errno.ENOENT)   # left by an earlier call: never a compile failure's
    failure = BccFailure.of(Exception("Failed to compile BPF module <text>"))
    assert (failure.step, failure.errno) == ("compile", 0)
    ctypes.set_errno(errno.EACCES)
    failure = BccFailure.of(Exception("Failed to load BPF program b'f': Permission denied"))
    assert (failure.step, failure.errno) == ("load", errno.EACCES)
    assert failure.said == "Failed to load BPF program b'f': Permission denied (EACCES)"
    failure = BccFailure.of(Exception("Need super-user privileges to run"))
    assert (failure.step, failure.errno) == ("load", errno.EPERM)
    # the program cache's loader gives its errno with the words
    failure = BccFailure.of(OSError(errno.E2BIG, "Failed to load BPF program 'f': Argument list too long"))
    assert (failure.step, failure.errno) == ("load", errno.E2BIG)
    ctypes.set_errno(0)
    failure = BccFailure.of(Exception("Unknown program b'nope'"))
    assert (failure.step, failure.errno, failure.said) == ("", 0, "Unknown program b'nope'")
