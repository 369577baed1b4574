"""Room in the in-kernel unwinder's row array (pytracekit/symbolize/unwind_space.py,
unwinder.py): modules' tables are shared by build id, kept while a live
process maps them, and evicted least recently used first when a later
module needs their rows, so a program that starts after a churn of other
programs (more tables than the array holds) still unwinds whole; then tables
live processes map but no stack used for a while; module ids are reused
under a new generation, stacks stored before keep their names."""
import hashlib
import os
import re
import shutil
import time
import subprocess

import pytest

from conftest import NOFP_FLAGS, WORKLOAD_SRC, pytracekit
from stack_checks import names, parse_json

from pytracekit.symbolize.unwind_space import RowSpace

ROOT_PATH = "_start;__libc_start_main;__libc_start_call_main;main"
SPIN_TAILS = ["", ";clock_ns", ";clock_ns;_init", ";clock_ns;clock_gettime@plt",
              ";clock_ns;clock_gettime", ";clock_ns;clock_gettime;clock_gettime"]
CHURN = 8        # distinct programs run one after another before the target
RESIDENT = 3     # of them, the row array holds this many besides what sh maps
# gcc's crtstuff (run at each start and exit) has no FDEs and keeps frame
# pointers: a frame-pointer step through it is right, and counted (as a gap)
CRT_WITHOUT_CFI = {"deregister_tm_clones", "register_tm_clones", "__do_global_dtors_aux",
                   "frame_dummy"}


def test_row_space_is_first_fit_and_merges_what_is_given_back():
    space = RowSpace(100)
    assert [space.take(n) for n in (30, 30, 30)] == [0, 30, 60]
    assert space.take(11) is None and space.free == 10
    space.give(30, 30)
    assert space.take(31) is None and space.largest() == 30
    space.give(0, 30)        # merged with [30, 60)
    assert space.largest() == 60 and space.take(45) == 0
    space.give(60, 30)       # merged with the rest: [45, 100)
    assert (space.free, space.largest()) == (55, 55)
    space.give(0, 45)
    assert (space.free, space.largest(), space.starts) == (100, 100, [0])
    with pytest.raises(ValueError):
        space.give(10, 5)    # already free: a bug in the caller, never a silent overlap


def _gap_samples(stacks: list[dict]) -> int:
    """Samples whose stacks may take a counted frame-pointer step: through
    crtstuff, named in the workloads, or anywhere in sh's own stripped code
    (its crtstuff has no name there)."""
    sh = os.path.basename(os.path.realpath(shutil.which("sh")))
    return sum(s["value"] for s in stacks
               if any(f["name"] in CRT_WITHOUT_CFI or f["name"].startswith(f"{sh}+0x")
                      for f in s["frames"] if f["kind"] == "user"))


def _rows(path: str) -> int:
    """Rows of a file's table, as the unwinder writes them."""
    from pytracekit.symbolize.elfsyms import load_image
    from pytracekit.symbolize.symbols import ElfSymbols, _own_vdso
    from pytracekit.symbolize.unwind_table import ROW, UnwindTable
    image = ElfSymbols.load(path, _own_vdso()).image if path == "[vdso]" else load_image(path)
    return len(UnwindTable.cached_packed(image, image.build_id(), path)) // ROW.size


@pytest.fixture(scope="module")
def distinct_programs(tmp_path_factory) -> list[str]:
    """CHURN + 1 copies of the no-frame-pointer workload, each with its own
    build id (one compile, then a link each)."""
    base = tmp_path_factory.mktemp("churn")
    obj = base / "workload.o"
    subprocess.run(["gcc", *NOFP_FLAGS, "-c", "-o", str(obj), str(WORKLOAD_SRC)], check=True)
    # ids from the object's hash: tables are cached on disk by build id, and a
    # fixed id would keep an older workload.c's table (its walks then stop early)
    digest = hashlib.sha1(obj.read_bytes()).hexdigest()[:32]
    paths = []
    for i in range(CHURN + 1):
        path = base / f"workload-{i}"
        subprocess.run(["gcc", "-pthread", f"-Wl,--build-id=0x{digest}{i:08x}", "-o",
                        str(path), str(obj)], check=True)
        paths.append(str(path))
    return paths


@pytest.mark.root
def test_churn_beyond_the_row_array_evicts_tables_and_a_late_program_unwinds_whole(
        distinct_programs):
    # sh (held with every program it runs) maps its own binary, libc, ld.so and
    # the vDSO for the whole run; the array holds those and RESIDENT copies of
    # the workload, so the CHURN copies run before the target need evictions
    sh = os.path.realpath(shutil.which("sh"))
    libs = [p for p in ("/usr/lib/x86_64-linux-gnu/libc.so.6",
                        "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2") if os.path.exists(p)]
    if len(libs) < 2:
        pytest.skip("needs Debian's libc and ld.so paths")
    per_copy = _rows(distinct_programs[0])
    capacity = sum(_rows(p) for p in [sh, *libs, "[vdso]"]) + RESIDENT * per_copy + per_copy // 2
    *churn, target = distinct_programs
    script = "; ".join([f"{p} spinchild 30" for p in churn] + [f"{target} spincpu 600"])
    res = pytracekit("profile", "-F", "199", "-U", "--json", "--verbose", "--", "sh", "-c",
                     script, env={"PYTRACEKIT_UNWIND_ROWS": str(capacity)}, timeout=120)
    assert res.returncode == 0, res.stderr
    _, stacks, loss = parse_json(res.stdout, "profile")
    late = [s for s in stacks if s["comm"] == os.path.basename(target)
            and "spin_outer" in names(s, "user")]
    allowed = {f"{ROOT_PATH};spin_outer;spin_inner{tail}" for tail in SPIN_TAILS}
    assert sum(s["value"] for s in late) >= 30, stacks
    assert {";".join(names(s, "user")) for s in late} <= allowed
    # every churn program unwound whole too (each got rows by evicting older ones)
    for s in stacks:
        if "child_spin" in names(s, "user"):
            assert ";".join(names(s, "user")).startswith(f"{ROOT_PATH};child_spin"), s
    assert loss["unwind_fp_steps"] <= _gap_samples(stacks), (loss, stacks)
    summary = re.search(r"(\d+) tables evicted \((\d+) rows\).* (\d+) rows full", res.stderr)
    assert summary, res.stderr
    evicted, evicted_rows, full = map(int, summary.groups())
    # the copies beyond RESIDENT (and the target) each evicted one older copy
    assert evicted >= CHURN + 1 - RESIDENT and evicted_rows == evicted * per_copy, res.stderr
    assert full == 0, res.stderr


@pytest.mark.root
def test_a_module_left_without_room_is_counted_where_frame_pointers_step_through_it(workload):
    # the frame-pointer workload, run by sh, which keeps its own modules (live,
    # and here never idle long enough to be evicted): its table does not fit,
    # so its frames come from frame-pointer steps (right in this build) and
    # each such sample is counted
    sh = os.path.realpath(shutil.which("sh"))
    libs = [p for p in ("/usr/lib/x86_64-linux-gnu/libc.so.6",
                        "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2") if os.path.exists(p)]
    if len(libs) < 2:
        pytest.skip("needs Debian's libc and ld.so paths")
    capacity = sum(_rows(p) for p in [sh, *libs, "[vdso]"]) + _rows(workload) // 2
    res = pytracekit("profile", "-F", "199", "-U", "--json", "--verbose", "--", "sh", "-c",
                     f"{workload} spincpu 600", env={"PYTRACEKIT_UNWIND_ROWS": str(capacity),
                                                     "PYTRACEKIT_UNWIND_LIVE_IDLE": "1000000"})
    assert res.returncode == 0, res.stderr
    _, stacks, loss = parse_json(res.stdout, "profile")
    spin = [s for s in stacks if "spin_inner" in names(s, "user")]
    total = sum(s["value"] for s in spin)
    whole = sum(s["value"] for s in spin if ";".join(names(s, "user")).startswith(
        f"{ROOT_PATH};spin_outer;spin_inner"))
    assert total >= 30 and whole >= 0.9 * total, stacks
    assert loss["unwind_fp_steps"] >= total, loss
    full = re.search(r" (\d+) rows full;", res.stderr)
    assert full and int(full[1]) >= 1, res.stderr   # the workload's table
    assert "user stacks with frame-pointer steps in code that has CFI" in res.stderr


class _Table(dict):
    """A BPF table as the unwinder uses it (keys and leaves as plain values)."""
    Key = staticmethod(lambda value: value)
    Leaf = staticmethod(lambda *values: values)

    def __init__(self, max_entries: int = 0) -> None:
        super().__init__()
        self.max_entries, self.map_fd = max_entries, -1   # rows: anonymous memory


class _Image:
    def __init__(self, path: str, rows: int) -> None:
        self.path, self.rows = path, rows

    def build_id(self) -> str:
        return f"{abs(hash(self.path)):040x}"

    def section(self, _name: str):
        return None   # no estimate: the table's real size decides


def _unwinder(monkeypatch, capacity: int, sizes: dict[str, int]):
    from types import SimpleNamespace
    from pytracekit.symbolize import unwinder as unwinder_mod
    from pytracekit.symbolize.unwind_table import UnwindTable
    monkeypatch.setattr(UnwindTable, "cached_packed",
                        classmethod(lambda cls, image, *_: b"\0" * 8 * image.rows))
    images = {p: _Image(p, n) for p, n in sizes.items()}
    users = SimpleNamespace(binary=lambda path, pid: SimpleNamespace(image=images[path]))
    prog = {"unwind_rows": _Table(capacity), "unwind_modules": _Table(), "proc_maps": _Table(),
            "hold_tree": _Table(), "entry_held": _Table(), "holds_armed": _Table(1),
            "unwind_maps": _Table(64 * 8)}
    return unwinder_mod.Unwinder(prog, users), prog


def _load_process(unw, prog, pid: int, *paths: str) -> list:
    """What the unwinder does when process `pid` mapping `paths` is loaded:
    its modules (tables written), its slot, its proc_maps entry, its refs."""
    found = [unw._module_for(p, pid) for p in paths]
    unw._with_tables(found)
    unw.slots[pid] = len(unw.slots)
    prog["proc_maps"][pid] = 1
    unw._hold_refs(pid, frozenset(m.module_id for m, _ in found))
    return [m for m, _ in found]


def test_tables_no_live_process_maps_are_evicted_least_recently_used_first(monkeypatch):
    # libc 50 rows shared; programs a-d 20 rows each; room for libc and two of them
    unw, prog = _unwinder(monkeypatch, 95, {"libc": 50, "a": 20, "b": 20, "c": 20, "d": 20})
    live = [1, os.getpid()]   # pids that exist (the unwinder checks /proc too)

    def run(pid: int, *paths: str) -> list:
        return _load_process(unw, prog, pid, *paths)

    def exit_(pid: int) -> None:
        del prog["proc_maps"][pid]   # as the kernel does at exit

    libc, a = run(live[0], "libc", "a")
    _, b = run(live[1], "libc", "b")
    assert libc.refs == 2 and unw.space.free == 5
    exit_(live[0])                  # a is no longer mapped; libc still is (b's process)
    _, c = run(live[0], "libc", "c")
    assert (a.n_rows, c.n_rows, libc.n_rows) == (0, 20, 50) and unw.stats["evicted"] == 1
    # b's process ends, seen gone; then c's: d needs room, and b (out of use
    # longer) goes before c
    exit_(live[1])
    unw._reclaim()
    exit_(live[0])
    _, d = run(live[0], "libc", "d")
    assert (b.n_rows, c.n_rows, d.n_rows) == (0, 20, 20)
    assert prog["unwind_modules"][d.module_id] == (d.first_row, 20)
    assert b.module_id not in prog["unwind_modules"]   # the BPF side no longer reads it


def test_a_table_without_room_is_marked_and_its_mark_goes_with_its_last_process(monkeypatch):
    from pytracekit.symbolize.unwinder import NO_ROOM
    unw, prog = _unwinder(monkeypatch, 60, {"libc": 50, "big": 20})
    found = [unw._module_for(p, os.getpid()) for p in ("libc", "big")]
    unw._with_tables(found)   # one process maps both: neither is evicted for the other
    (libc, _), (big, _) = found
    assert libc.n_rows == 50 and big.n_rows == 0 and unw.stats["table_full"] == 1
    assert prog["unwind_modules"][big.module_id] == (NO_ROOM, 0)   # counted by the BPF side
    unw.slots[os.getpid()] = 0
    prog["proc_maps"][os.getpid()] = 1
    unw._hold_refs(os.getpid(), frozenset({libc.module_id, big.module_id}))
    unw._hold_refs(os.getpid(), frozenset())
    assert big.module_id not in prog["unwind_modules"] and not big.no_room


def test_an_idle_live_table_is_evicted_least_recently_sampled_first_and_restored(monkeypatch):
    from pytracekit.symbolize.unwinder import NO_ROOM
    unw, prog = _unwinder(monkeypatch, 95, {"libc": 50, "a": 20, "b": 20, "c": 20})
    pids = [1, os.getpid(), os.getppid()]   # live processes (the unwinder checks /proc)

    def run(pid: int, *paths: str) -> list:
        return _load_process(unw, prog, pid, *paths)

    libc, a = run(pids[0], "libc", "a")
    _, b = run(pids[1], "libc", "b")
    now = time.monotonic_ns() >> 30
    a.written, b.written = now - 5, now - 3   # stamps: a unused longest, b since
    unw.live_idle = 2
    _, c = run(pids[2], "libc", "c")   # needs 20 rows: a's are taken, not b's
    assert (a.n_rows, b.n_rows, c.n_rows) == (0, 20, 20) and a.no_room and a.refs == 1
    assert prog["unwind_modules"][a.module_id] == (NO_ROOM, 0)   # its steps are counted
    assert (unw.stats["evicted_live"], unw.stats["evicted_live_rows"], unw.stats["evicted"]) \
        == (1, 20, 0)
    b.written = now   # sampled just now: b is never taken for a while
    unw._with_tables([unw._module_for("libc", 0), unw._module_for("b", 0)])
    a.retry_at = 0.0
    unw.restore()     # no free or unmapped rows: a stays marked, c keeps its rows
    assert (a.n_rows, c.n_rows) == (0, 20) and a.no_room
    del prog["proc_maps"][pids[2]]   # c's process exits (the kernel drops its entry)
    unw._reclaim()
    a.retry_at = 0.0
    unw.restore()     # c is mapped no more: its rows go back to a
    assert (a.n_rows, c.n_rows, a.no_room) == (20, 0, False)
    assert prog["unwind_modules"][a.module_id] == (a.first_row, 20)


def test_module_ids_of_unmapped_modules_are_reused_under_a_new_generation(monkeypatch):
    from pytracekit.symbolize.unwinder import MAX_SLOTS, split_frame
    monkeypatch.setenv("PYTRACEKIT_UNWIND_MODULE_IDS", "3")
    unw, prog = _unwinder(monkeypatch, 1000, {p: 10 for p in ("libc", "a", "b", "c", "d")})
    live = os.getpid()
    found = [unw._module_for(p, live) for p in ("libc", "a", "b")]
    unw._with_tables(found)
    (libc, _), (a, _), (b, _) = found
    unw.slots[live] = 0
    prog["proc_maps"][live] = 1
    unw._hold_refs(live, frozenset({libc.module_id, b.module_id}))   # a: mapped no more
    unw.loading = set()                 # a later process's load (_load)
    c, _ = unw._module_for("c", live)   # the three slots are taken: a's is reused
    assert c.module_id & MAX_SLOTS == a.module_id & MAX_SLOTS and c.module_id != a.module_id
    assert unw.stats["ids_reused"] == 1 and a.module_id not in prog["unwind_modules"]
    # a frame stored under a's id still names a; c's under its own
    for mod in (a, c):
        module_id, vaddr = split_frame(mod.module_id << 32 | 0x1234)
        assert (unw.module(module_id), vaddr) == (mod, 0x1234)
    assert split_frame(0x7f0012345678) == (0, 0x7f0012345678)   # an absolute address
    # the file mapped again is a new module (a's table was given back)
    # libc and b mapped, c this load's: d has no id (its frames: absolute addresses)
    assert unw._module_for("d", live) is None and unw.stats["no_id"] == 1
    unw.loading = set()
    a2, _ = unw._module_for("a", live)
    assert a2 is not a and a2.module_id not in (a.module_id, c.module_id)


def _sh_modules() -> list[str]:
    """What `sh -c` maps besides the vDSO (its tables stay while it lives)."""
    libs = [p for p in ("/usr/lib/x86_64-linux-gnu/libc.so.6",
                        "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2") if os.path.exists(p)]
    if len(libs) < 2:
        pytest.skip("needs Debian's libc and ld.so paths")
    return [os.path.realpath(shutil.which("sh")), *libs]


def _late_stacks_whole(stacks: list[dict], program: str) -> int:
    """Samples of `program`'s spin, each whole from _start (with its module)."""
    late = [s for s in stacks if s["comm"] == os.path.basename(program)
            and "spin_outer" in names(s, "user")]
    allowed = {f"{ROOT_PATH};spin_outer;spin_inner{tail}" for tail in SPIN_TAILS}
    assert {";".join(names(s, "user")) for s in late} <= allowed, late
    return sum(s["value"] for s in late)


@pytest.mark.root
def test_a_live_table_no_stack_used_for_a_while_is_evicted_for_a_new_program(
        distinct_programs):
    # copy 0 sleeps in the background (live, not sampled after its start;
    # sh waits too), a second run of it loads its table before copy 1
    # sleeps 4 s, left without room: copy 0's table is too new to give up
    # then (it may be in use). Then copy 1 spins: an idle live table is
    # evicted for it (counted; marked: frame-pointer steps there are counted
    # too), and copy 1 unwinds whole
    idle, late = distinct_programs[0], distinct_programs[1]
    per_copy = _rows(idle)
    capacity = sum(_rows(p) for p in [*_sh_modules(), "[vdso]"]) + per_copy + per_copy // 2
    script = (f"{idle} sleep 1 7000 & {idle} sleep 1 200; {late} sleep 1 4000; "
              f"{late} spincpu 600; wait")
    res = pytracekit("profile", "-F", "199", "-U", "--json", "--verbose", "--", "sh", "-c",
                     script, timeout=120, env={"PYTRACEKIT_UNWIND_ROWS": str(capacity)})
    assert res.returncode == 0, res.stderr
    _, stacks, loss = parse_json(res.stdout, "profile")
    assert _late_stacks_whole(stacks, late) >= 30, stacks
    summary = re.search(r"(\d+) \((\d+) rows\) that live processes map", res.stderr)
    assert summary, res.stderr
    evicted_live, rows = map(int, summary.groups())
    assert evicted_live >= 1 and rows >= per_copy, res.stderr


@pytest.mark.root
def test_module_ids_run_out_and_are_reused_while_older_stacks_keep_their_names(
        distinct_programs):
    # ids for sh's modules, the vDSO and two copies: each later copy reuses
    # the id of one that exited, under a new generation; every copy's stacks
    # name their own file, the target's are whole
    *churn, target = distinct_programs
    script = "; ".join([f"{p} spinchild 30" for p in churn] + [f"{target} spincpu 600"])
    res = pytracekit("profile", "-F", "199", "-U", "--json", "--verbose", "--", "sh", "-c",
                     script, timeout=120,
                     env={"PYTRACEKIT_UNWIND_MODULE_IDS": str(len(_sh_modules()) + 1 + 2)})
    assert res.returncode == 0, res.stderr
    _, stacks, loss = parse_json(res.stdout, "profile")
    assert _late_stacks_whole(stacks, target) >= 30, stacks
    seen = set()
    for s in stacks:
        user = [f for f in s["frames"] if f["kind"] == "user"]
        if any(f["name"] == "child_spin" for f in user):
            assert ";".join(f["name"] for f in user).startswith(f"{ROOT_PATH};child_spin"), s
            own = {f["module"] for f in user if f["name"] in ("main", "child_spin")}
            assert own == {s["comm"]}, s   # named from its own file, not a later copy's
            seen.add(s["comm"])
    assert len(seen) >= CHURN // 2, seen
    assert loss["unwind_fp_steps"] <= _gap_samples(stacks), (loss, stacks)
    reused = re.search(r"(\d+) module ids reused, (\d+) modules without an id", res.stderr)
    assert reused and int(reused[1]) >= CHURN - 1 and int(reused[2]) == 0, res.stderr
