"""One implementation of "this process and the children it forks" (issue 14):
bpf/ptk_follow.h's `followed` map and fork hook. A bpf/ file that grows its
own fork-following map again fails here."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BPF = sorted((ROOT / "bpf").glob("*.[ch]"))
SHARED = "ptk_follow.h"
# (file, map) a fork handler may carry from parent to child, with why. None:
# the unwinder's per-process state goes through ptk_unwind_fork() (not a
# selection: the child's mappings until user space loads its own).
INHERITED_STATE: set[tuple[str, str]] = set()

# a fork probe, or the shared fork hook that stack tools' own raw fork probe calls
FORK_PROBE = re.compile(r"PROBE\(\s*(?:sched\s*,\s*)?sched_process_fork\s*\)"
                        r"|\bvoid\s+ptk_follow_fork\s*\([^)]*\)(?=\s*\{)")
MAP_CALL = re.compile(r"\b(\w+)\.(lookup|update|insert)\s*\(")
SELECTION_MAP = re.compile(r"BPF_(?:HASH|TABLE)\([^;]*\b(followed|selected)\b")


def fork_handlers(text: str) -> list[str]:
    """The bodies of the file's sched_process_fork probes."""
    bodies = []
    for match in FORK_PROBE.finditer(text):
        start = text.index("{", match.end())
        depth, i = 0, start
        while True:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            if depth == 0:
                break
            i += 1
        bodies.append(text[start:i + 1])
    return bodies


def inherited_maps(text: str) -> set[str]:
    """Maps a fork handler both looks up and writes: the parent's entry makes
    the child's (what following forks is)."""
    found = set()
    for body in fork_handlers(text):
        calls: dict[str, set[str]] = {}
        for name, op in MAP_CALL.findall(body):
            calls.setdefault(name, set()).add(op)
        found |= {name for name, ops in calls.items()
                  if "lookup" in ops and ops & {"update", "insert"}}
    return found


def test_no_bpf_file_follows_forks_on_its_own():
    own = sorted(f"{p.name}: {m}" for p in BPF if p.name != SHARED
                 for m in inherited_maps(p.read_text()) if (p.name, m) not in INHERITED_STATE)
    assert own == [], "follow forks with ptk_follow.h's `followed`, not a map of your own"
    declared = sorted(f"{p.name}: {m.group(1)}" for p in BPF if p.name != SHARED
                      for m in SELECTION_MAP.finditer(p.read_text()))
    assert declared == []


def test_the_check_finds_a_fork_following_map():
    """What top.bpf.c had before it used ptk_follow.h."""
    own = """
    BPF_HASH(mine, u32, u8, 4096);
    RAW_TRACEPOINT_PROBE(sched_process_fork)
    {
        u32 parent = bpf_get_current_pid_tgid() >> 32, child = 0;
        if (!mine.lookup(&parent)) { return 0; }
        u8 one = 1;
        mine.update(&child, &one);
        return 0;
    }
    """
    assert inherited_maps(own) == {"mine"}
    assert inherited_maps((ROOT / "bpf" / SHARED).read_text()) == {"followed"}
