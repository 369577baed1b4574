"""kmem against `workload open PATH N` (-p, started by a go file): each
open allocates exactly one struct file, in alloc_empty_file."""
import os
import re
import subprocess
import tempfile

import pytest

from conftest import Tool, pytracekit
from interval_helpers import per_interval, text_tables
from sched_helpers import json_lines, validate
from pytracekit.tools.kmem import CallSite, PageAllocs, render_pages, render_slab

N = 30


def _kmem_over_opens(workload: str, kmem_args: list[str], mode: list[str]) -> str:
    """kmem ARGS -p PID over `workload MODE PATH ARGS` (open or openpaced),
    attached before the first open, so exactly its opens are seen."""
    with tempfile.TemporaryDirectory() as tmp:
        go = os.path.join(tmp, "go")
        proc = subprocess.Popen([workload, "--go-file", go, mode[0], os.path.join(tmp, "f"),
                                 *mode[1:]])
        try:
            with Tool("kmem", *kmem_args, "-p", str(proc.pid)) as tool:
                open(go, "w").close()
                proc.wait(timeout=30)
                out, err = tool.stop()
        finally:
            proc.kill()
            proc.wait()
    assert tool.returncode == 0, err
    return out


@pytest.mark.root
def test_kmem_counts_one_file_allocation_per_open(workload):
    out = _kmem_over_opens(workload, ["--slab", "--page", "--json"], ["open", str(N)])
    objs = json_lines(out)
    validate("kmem", objs)
    sites = {o["callsite"]: o for o in objs if o["type"] == "callsite"}
    assert sites["alloc_empty_file"]["hits"] == N
    f = sites["alloc_empty_file"]
    assert f["bytes_alloc"] % N == 0 and f["bytes_req"] % N == 0
    assert f["bytes_alloc"] >= f["bytes_req"] > 0
    (summary,) = [o for o in objs if o["type"] == "slab_summary"]
    assert summary["allocations"] == sum(o["hits"] for o in sites.values())


@pytest.mark.root
def test_kmem_counts_alike_in_its_slots_and_in_its_map(workload, monkeypatch):
    """With one per-CPU slot (SLOTS=1) the first key on each CPU takes it and
    every other key is counted in the `sites` map: the counts are as exact,
    and a clearing read leaves nothing to count twice."""
    from pytracekit.engine.loader import Program
    from pytracekit.tools.kmem import Kmem
    with tempfile.TemporaryDirectory() as tmp:
        go = os.path.join(tmp, "go")
        proc = subprocess.Popen([workload, "--go-file", go, "open", os.path.join(tmp, "f"),
                                 str(N)])
        tool = Kmem(Program.from_file("kmem", defines={"FILTER_PID": proc.pid, "SLOTS": 1}))
        lookups = []
        from bcc import BPF
        ksym = BPF.ksym   # BCC's read of kallsyms, through the class or a program
        monkeypatch.setattr(BPF, "ksym", staticmethod(
            lambda *a, **kw: lookups.append(a) or ksym(*a, **kw)))
        try:
            open(go, "w").close()
            proc.wait(timeout=30)
            in_map = len(tool.prog["sites"].items())
            first = tool.read_sites(clear=True)
            again = tool.read_sites(offsets=False, clear=True)
        finally:
            tool.close()
            proc.kill()
            proc.wait()
    hits = {s.function: s.hits for s in first}
    assert hits["alloc_empty_file"] == N, hits
    # the per-boot kernel symbol table named every call site: no read of
    # /proc/kallsyms by BCC, and the names are BCC's (its read as the oracle)
    assert lookups == []
    for site in first:
        assert site.name == ksym(site.call_site, show_offset=True).decode(), site
        assert site.name == site.function or site.name.startswith(site.function + "+0x"), site
    (alloc,) = [s for s in first if s.function == "alloc_empty_file"]
    assert re.fullmatch(r"alloc_empty_file\+0x[0-9a-f]+", alloc.name), alloc
    # three cache keys per open, a slot per CPU: at least one was counted in the map
    assert in_map > 0
    assert again == []


@pytest.mark.root
def test_kmem_text_of_a_command(workload):
    with tempfile.TemporaryDirectory() as tmp:
        res = pytracekit("kmem", "-s", "hit", "--", workload, "open", os.path.join(tmp, "f"), "5")
    assert res.returncode == 0, res.stderr
    rows = [l for l in res.stdout.splitlines() if l.startswith(" alloc_empty_file+")]
    assert len(rows) == 1
    assert int(rows[0].split("|")[3]) >= 5     # and the dynamic loader's opens
    assert "SUMMARY (SLAB allocator)" in res.stdout


def test_renderers():
    text = render_slab([CallSite(1, "a+0x1", 2, 300, 400), CallSite(2, "b+0x2", 5, 10, 10)], 3,
                       sort="hit").splitlines()
    assert text[3].split("|")[0].strip() == "b+0x2"
    a = [c.strip() for c in text[4].split("|")]
    assert a == ["a+0x1", "400/200", "300/150", "2", "25.000%"]
    assert "Total bytes wasted on internal fragmentation: 100" in text
    pages = render_pages([PageAllocs(2, 1, 0x100cca, 3)]).splitlines()
    assert [c.strip() for c in pages[3].split("|")] == ["2", "MOVABLE", "0x100cca", "3", "12"]


@pytest.mark.root
def test_kmem_page_counts_the_touched_pages(workload):
    res = pytracekit("kmem", "--page", "--json", "--", workload, "touch", "64")
    assert res.returncode == 0, res.stderr
    objs = json_lines(res.stdout)
    validate("kmem", objs)
    assert not [o for o in objs if o["type"] in ("callsite", "slab_summary")]
    movable = [o for o in objs if o["type"] == "pages" and o["migratetype"] == "MOVABLE"]
    # each of the 64 fresh anonymous pages is one order-0 movable allocation
    assert sum(o["count"] for o in movable if o["order"] == 0) >= 64
    assert all(o["pages"] == o["count"] << o["order"] for o in objs if o["type"] == "pages")


@pytest.mark.root
@pytest.mark.alone   # 0.1 s intervals: a worker beside it delayed a tick past the next (interval numbers 15, 16 seen as one)
def test_kmem_interval_json_counts_each_allocation_once(workload):
    """`openpaced PATH 10 150`: 10 opens (one alloc_empty_file each) over 1.5 s: several
    0.1 s intervals even when a loaded machine delays the tool's ticks."""
    out = _kmem_over_opens(workload, ["--json", "-i", "0.1"], ["openpaced", "10", "150"])
    objs = json_lines(out)
    validate("kmem", objs)
    summaries = [o for o in objs if o["type"] == "slab_summary"]
    assert [o["interval_no"] for o in summaries] == list(range(1, len(summaries) + 1))
    assert len(summaries) >= 3
    files = per_interval(objs, "hits", lambda o: o.get("callsite") == "alloc_empty_file")
    assert sum(files.values()) == 10        # each open once, in the interval it happened
    assert len(files) >= 2                  # the opens spread over several intervals
    hits = per_interval(objs, "hits", lambda o: o["type"] == "callsite")
    for s in summaries:                     # each summary covers its own interval only
        assert s["allocations"] == hits.get(s["interval_no"], 0)


@pytest.mark.root
def test_kmem_interval_text_tables_add_up(workload):
    out = _kmem_over_opens(workload, ["-s", "hit", "--interval", "0.1"], ["openpaced", "8", "150"])
    tables = text_tables(out)
    assert len(tables) >= 3
    hits = [int(l.split("|")[3]) for t in tables for l in t if l.startswith(" alloc_empty_file+")]
    assert sum(hits) == 8 and len(hits) >= 2
    assert all(sum(l.startswith("SUMMARY (SLAB") for l in t) == 1 for t in tables)


def attached_tracepoints(pid: int) -> list[str]:
    """The raw tracepoints process `pid`'s BPF links are attached to."""
    names = []
    for fd in os.listdir(f"/proc/{pid}/fdinfo"):
        try:
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                names += re.findall(r"^tp_name:\s*(\S+)", f.read(), re.M)
        except OSError:     # closed meanwhile
            pass
    return sorted(names)


@pytest.mark.root
@pytest.mark.parametrize("args, events", [
    ([], ["kfree", "kmalloc", "kmem_cache_alloc", "kmem_cache_free"]),
    (["--page"], ["mm_page_alloc"]),
    (["--slab", "--page"], ["kfree", "kmalloc", "kmem_cache_alloc", "kmem_cache_free",
                            "mm_page_alloc"]),
])
def test_each_report_pays_only_for_its_own_events(args, events):
    """The slab report does not trace page allocations, nor the page report slab
    ones: each costs every traced allocation its probe."""
    with Tool("kmem", *args) as tool:
        assert attached_tracepoints(tool.proc.pid) == events
        out, err = tool.stop()
    assert tool.returncode == 0, err
    assert ("SUMMARY (SLAB allocator)" in out) == (not args or "--slab" in args)
    assert ("SUMMARY (page allocator)" in out) == ("--page" in args)
