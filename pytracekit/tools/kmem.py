"""kmem: kernel memory allocations like `perf kmem stat`, aggregated in BPF.

--slab (default): per call site (symbolized through kallsyms) the hits and
bytes allocated/requested, with internal fragmentation; then a summary.
--page: page allocations by order, migrate type and GFP flags.
-i/--interval: the tables every SECONDS, each covering only its interval.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import click

from ..cli import options
from ..families.intervals import entries, run_interval_tables, stamped
from ..collect.mapdrain import array_snapshot
from ..engine.loader import Program
from ..families.periodic import BpfTool, attached, command_only, require_tracepoints
from ..engine.runner import Target

DRY_RUN_ARGS: list[str] = []
SORT_KEYS = ("hit", "bytes", "req", "frag")
MIGRATE_TYPES = {0: "UNMOVABLE", 1: "MOVABLE", 2: "RECLAIMABLE", 3: "HIGHATOMIC", 4: "CMA",
                 5: "ISOLATE"}
RULE = "-" * 97


@dataclass
class CallSite:
    call_site: int
    name: str
    hits: int
    bytes_req: int
    bytes_alloc: int
    function: str = ""    # the name without its offset (JSON); "" when it is the name

    @property
    def frag(self) -> float:
        """Percent of the allocated bytes that were not requested."""
        if not self.bytes_alloc:
            return 0.0
        return 100.0 * (self.bytes_alloc - self.bytes_req) / self.bytes_alloc

    def sort_value(self, key: str) -> float:
        return {"hit": self.hits, "bytes": self.bytes_alloc, "req": self.bytes_req,
                "frag": self.frag}[key]

    def as_dict(self) -> dict[str, Any]:
        return {"type": "callsite", "callsite": self.function or self.name,
                "address": self.call_site,
                "hits": self.hits, "bytes_req": self.bytes_req, "bytes_alloc": self.bytes_alloc,
                "frag": round(self.frag, 3)}


@dataclass
class PageAllocs:
    order: int
    migratetype: int
    gfp_flags: int
    count: int

    def as_dict(self) -> dict[str, Any]:
        return {"type": "pages", "order": self.order,
                "migratetype": MIGRATE_TYPES.get(self.migratetype, str(self.migratetype)),
                "gfp_flags": self.gfp_flags, "count": self.count,
                "pages": self.count << self.order}


@dataclass
class Kmem(BpfTool):
    """read_*(clear=True) return what happened since the last clearing read."""

    frees_read: list[int] = field(default_factory=lambda: [0, 0])
    # the slots' cumulative totals at the last clearing read: (call site, cache) ->
    # [hits, bytes requested, bytes allocated]
    slots_read: dict[tuple[int, int], list[int]] = field(default_factory=dict)
    # names call sites as the stack tools name kernel frames (made at the first)
    symbolizer: Any = None

    def _slot_totals(self) -> dict[tuple[int, int], list[int]]:
        """What the per-CPU slots (bpf/kmem.bpf.c) have counted since the start,
        per (call site, cache), summed over CPUs; a cache's slot holds its sizes
        per object, multiplied here."""
        totals: dict[tuple[int, int], list[int]] = {}
        for name in ("kmalloc_slots", "cache_slots"):
            for _, per_cpu in array_snapshot(self.prog[name]):
                for slot in per_cpu:
                    key, st = slot.key, slot.stats
                    if not key.call_site:
                        continue
                    scale = st.hits if key.cache else 1
                    total = totals.setdefault((key.call_site, key.cache), [0, 0, 0])
                    total[0] += st.hits
                    total[1] += st.bytes_req * scale
                    total[2] += st.bytes_alloc * scale
        return totals

    def _slot_deltas(self, clear: bool) -> dict[int, list[int]]:
        """Per call site, what the slots counted since the last clearing read
        (they only grow: what was read then is subtracted); sites with no new
        hits left out."""
        slots = self._slot_totals()
        deltas: dict[int, list[int]] = {}
        for key, now in slots.items():
            before = self.slots_read.get(key, [0, 0, 0])
            if now[0] != before[0]:
                delta = deltas.setdefault(key[0], [0, 0, 0])
                for i in range(3):
                    delta[i] += now[i] - before[i]
        if clear:
            self.slots_read = slots
        return deltas

    def read_sites(self, offsets: bool = True, clear: bool = False) -> list[CallSite]:
        """Per call site, its kmalloc totals and its allocations from each
        cache (the kernel keeps a cache's per-object sizes: hits times them):
        those counted in the slots and those in the `sites` map (drained when
        clearing)."""
        totals = self._slot_deltas(clear)
        for key, st in entries(self.prog["sites"], clear):
            scale = st.hits if key.cache else 1
            total = totals.setdefault(key.call_site, [0, 0, 0])
            total[0] += st.hits
            total[1] += st.bytes_req * scale
            total[2] += st.bytes_alloc * scale
        sites = []
        for call_site, (hits, req, alloc) in totals.items():
            name, function = self._names(call_site)
            sites.append(CallSite(call_site, name if offsets else function, hits, req, alloc,
                                  function))
        return sites

    def _names(self, call_site: int) -> tuple[str, str]:
        """`function+0xOFFSET` and `function`, named as the stack tools name
        kernel frames (Symbolizer.kernel_name: the per-boot symbol table, BCC's
        read of /proc/kallsyms, ~85 ms of CPU, only for what it leaves); the
        address for both when none is found."""
        if self.symbolizer is None:
            from ..symbolize.symbols import Symbolizer
            self.symbolizer = Symbolizer(show_offset=True)
        name = self.symbolizer.kernel_name(call_site)
        if not name or name == "[unknown]":
            return f"{call_site:#x}", f"{call_site:#x}"
        return name, name.rpartition("+0x")[0] or name

    def read_pages(self, clear: bool = False) -> list[PageAllocs]:
        return [PageAllocs(k.order, k.migratetype, k.gfp_flags, v.value)
                for k, v in entries(self.prog["pages"], clear)]

    def frees(self, clear: bool = False) -> int:
        """The frees array only grows (array entries cannot be deleted):
        clearing remembers what was read, so no free between two reads is lost."""
        table = self.prog["frees"]     # per-CPU counters
        now = [table.sum(table.Key(i)).value for i in range(2)]
        since = sum(now) - sum(self.frees_read)
        if clear:
            self.frees_read = now
        return since

    def read(self) -> tuple[list[CallSite], list[PageAllocs]]:
        """The session's read(): call sites and page allocations so far."""
        return self.read_sites(), self.read_pages()


SLAB_EVENTS = ("kmem:kmalloc", "kmem:kmem_cache_alloc", "kmem:kfree", "kmem:kmem_cache_free")
PAGE_EVENTS = ("kmem:mm_page_alloc",)


def start(*, pid: int = 0, slab: bool = True, page: bool = True, **_: Any) -> Kmem:
    """Only the probes of the reports asked for are attached."""
    require_tracepoints("kmem", *(SLAB_EVENTS if slab else ()), *(PAGE_EVENTS if page else ()))
    return Kmem(Program.from_file("kmem", defines={"FILTER_PID": pid or 0, "SLAB": slab,
                                                   "PAGES": page}))


def render_slab(sites: list[CallSite], frees: int, sort: str = "bytes",
                limit: int | None = None) -> str:
    ordered = sorted(sites, key=lambda s: (-s.sort_value(sort), s.name))[:limit]
    out = [RULE, f" {'Callsite':<35}| {'Total_alloc/Per':<16}| {'Total_req/Per':<16}| "
                 f"{'Hit':>8} | {'Frag':>8}", RULE]
    for s in ordered:
        alloc = f"{s.bytes_alloc}/{s.bytes_alloc // s.hits if s.hits else 0}"
        req = f"{s.bytes_req}/{s.bytes_req // s.hits if s.hits else 0}"
        out.append(f" {s.name[:35]:<35}| {alloc:<16}| {req:<16}| {s.hits:>8} | {s.frag:7.3f}%")
    out.append(RULE)
    req = sum(s.bytes_req for s in sites)
    alloc = sum(s.bytes_alloc for s in sites)
    hits = sum(s.hits for s in sites)
    out += ["", "SUMMARY (SLAB allocator)", "========================",
            f"Total bytes requested: {req:,}",
            f"Total bytes allocated: {alloc:,}",
            f"Total bytes wasted on internal fragmentation: {alloc - req:,}",
            f"Internal fragmentation: {100.0 * (alloc - req) / alloc if alloc else 0:f}%",
            f"Allocations: {hits:,}  Frees: {frees:,}"]
    return "\n".join(out)


def render_pages(pages: list[PageAllocs]) -> str:
    out = [RULE, f" {'Order':>5} | {'Migrate type':<12} | {'GFP flags':>12} | {'Allocs':>8} | "
                 f"{'Pages':>8}", RULE]
    for p in sorted(pages, key=lambda p: (-p.count, p.order)):
        out.append(f" {p.order:>5} | {MIGRATE_TYPES.get(p.migratetype, str(p.migratetype)):<12} | "
                   f"{p.gfp_flags:>#12x} | {p.count:>8} | {p.count << p.order:>8}")
    out.append(RULE)
    total = sum(p.count << p.order for p in pages)
    out += ["", "SUMMARY (page allocator)", "========================",
            f"Total allocation requests: {sum(p.count for p in pages):,}",
            f"Total pages allocated: {total:,}  ({total * 4:,} KB)"]
    return "\n".join(out)


@click.command("kmem", context_settings={**options.TOOL_CONTEXT,
                                         "ignore_unknown_options": True})
@options.pid_option("-p")
@click.option("--slab", "slab", is_flag=True, help="Slab allocations by call site (default).")
@click.option("--page", "page", is_flag=True, help="Page allocations by order.")
@click.option("-s", "--sort", type=click.Choice(SORT_KEYS), default="bytes", show_default=True,
              help="Sort call sites by this column.")
@click.option("-l", "--line", "limit", type=click.IntRange(min=1), default=None,
              help="Print only this many call sites.")
@options.duration_option("-d")
@options.interval_option("-i")
@options.output_options()
@options.standard
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def command(pid, slab, page, sort, limit, duration, interval, out, command):
    """Kernel memory allocations by call site (like perf kmem stat)."""
    cmd = command_only(command, "kmem")
    slab = slab or not page
    target = Target.from_options(pid, cmd)
    with attached(target, lambda: start(pid=target.pid, slab=slab, page=page),
                  "Tracing kernel allocations... Hit Ctrl-C to end.") as tool:
        def print_table(stamp: dict[str, Any]) -> None:
            """The allocations since the last table (all of them without -i)."""
            sites = tool.read_sites(clear=True)
            frees = tool.frees(clear=True)
            pages = tool.read_pages(clear=True)
            if slab:
                ordered = sorted(sites, key=lambda s: (-s.sort_value(sort), s.name))
                out.emit(text=lambda: render_slab(sites, frees, sort, limit),
                         json=lambda: [stamped(s.as_dict(), stamp) for s in ordered[:limit]] + [
                             stamped({"type": "slab_summary",
                                      "bytes_req": sum(s.bytes_req for s in sites),
                                      "bytes_alloc": sum(s.bytes_alloc for s in sites),
                                      "allocations": sum(s.hits for s in sites),
                                      "frees": frees}, stamp)])
            if page:
                out.emit(text=lambda: render_pages(pages),
                         json=lambda: [stamped(p.as_dict(), stamp) for p in pages])
        run_interval_tables(target, print_table, duration=duration, interval=interval, out=out)
        out.loss(tool.loss())
