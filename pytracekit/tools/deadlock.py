"""deadlock: lock-order inversions between a process's mutexes (potential
deadlocks), found in the lock-order graph built from uprobes on
pthread_mutex_lock/unlock, printed in BCC's deadlock layout: the cycle, where
each thread took each mutex while holding the other, and where those threads
were created. BCC's PID positional, --binary, --lock-symbols, --unlock-symbols,
-t/--threads, -e/--edges, --dump-graph FILE (the graph as JSON). Stacks are
unwound in the kernel from CFI (--unwind dwarf, ustacks.py), so code built
without frame pointers has whole stacks; --unwind fp follows frame pointers."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass

import click

from ..cli import options
from ..collect import user_stacks as ustacks
from ..symbolize.datasyms import user_data_symbol
from ..errors import NotFoundError, UsageError
from ..engine.loader import Program
from ..probes.emulated import attach_entry_uprobe
from ..outfile import check_writable, write_file
from ..families.periodic import require_alive
from ..render.output import Output
from ..engine.runner import Stop, Target, announce, run_until_done
from ..symbolize.symbols import Symbolizer
from ..textsafe import cstr
from ..collect.user_stacks import EventUnwinding
from ..engine.session import ProgramSession

DRY_RUN_ARGS = ["-p", "1"]
CHECK_EVERY = 0.25          # seconds: look for a cycle, note the process's maps and names
DUMP_EVERY = 1.0            # seconds: --dump-graph rewrites its file (as BCC's)


@dataclass
class Edge:
    held: int
    wanted: int
    tid: int
    comm: str
    held_site: tuple[int, int, int]   # (stack id, caller, hash): see bpf/deadlock.bpf.c
    wanted_site: tuple[int, int, int]


def find_cycle(graph: dict[int, list[int]]) -> list[int]:
    """The mutexes of one cycle in the directed graph, in order (the first not
    repeated at the end); [] when there is none. Depth-first, iteratively."""
    state: dict[int, int] = {}          # 1: on the current path, 2: done
    for root in sorted(graph):
        if root in state:
            continue
        path, iters = [root], [iter(sorted(graph.get(root, ())))]
        state[root] = 1
        while path:
            nxt = next(iters[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                iters.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):]
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                iters.append(iter(sorted(graph.get(nxt, ()))))
    return []


class LockGraph(ProgramSession):
    """The loaded program and what user space keeps while the process lives
    (its maps for stacks, its mutexes' names)."""

    def __init__(self, prog: Program, pid: int, symbols: Symbolizer,
                 unwinding: EventUnwinding | None = None) -> None:
        self.prog, self.pid, self.symbols = prog, pid, symbols
        self.unwinding = unwinding   # --unwind dwarf
        self.names: dict[int, str] = {}

    def edges(self) -> list[Edge]:
        return [Edge(k.held, k.wanted, v.tid, cstr(v.comm), site_of(v.held_site),
                     site_of(v.wanted_site))
                for k, v in self.prog["edges"].items()]

    read = edges     # the session's read(): the lock-order edges seen so far

    def note_process(self) -> None:
        """While the process lives: its maps (stacks are named after it exits)
        and the names of the mutexes seen so far (globals in its binaries)."""
        self.symbols.users.refresh(self.pid)
        for e in self.edges():
            for mutex in (e.held, e.wanted):
                if mutex not in self.names:
                    name = user_data_symbol(self.pid, mutex)
                    if name is not None:
                        self.names[mutex] = name

    def stack(self, site: tuple[int, int, int]) -> list[tuple[int, str]]:
        """(address, name) leaf first. Unwound from CFI: the stack as stored.
        A frame-pointer walk: the probed function, its caller (the return
        address the walk skips), then the walk on; a walk that loops on one
        address (a frame without a frame pointer) ends there."""
        stack_id, caller, stack_hash = site
        if stack_hash:
            return [(f.address, f.name) for f in self.symbols.unwound_stack(stack_hash, self.pid)]
        if stack_id < 0:
            return []
        addresses = list(self.prog["user_stacks"].walk(stack_id))
        if caller and addresses:
            addresses.insert(1, caller)
        kept = [a for i, a in enumerate(addresses) if i == 0 or a != addresses[i - 1]]
        return [(a, self.symbols.user(a, self.pid).name) for a in kept]

    def creators(self) -> dict[int, tuple[int, str, tuple[int, int]]]:
        return {k.value: (v.parent_tid, cstr(v.comm), site_of(v.site))
                for k, v in self.prog["created_by"].items()}

    def close(self) -> None:
        try:
            if self.unwinding is not None:
                self.unwinding.close()
        finally:
            self.prog.close()


def site_of(s) -> tuple[int, int, int]:
    """A BPF struct site as (stack id, caller, hash)."""
    return (s.stack, s.caller, s.hash)


def start(*, pid: int, binary: str = "c", lock_symbols: tuple[str, ...] = ("pthread_mutex_lock",),
          unlock_symbols: tuple[str, ...] = ("pthread_mutex_unlock",), threads: int = 65536,
          edges: int = 65536, command: tuple[str, ...] = (), unwind: str = "dwarf") -> LockGraph:
    """`command`: the held command whose pid is `pid`."""
    prog = Program.from_file("deadlock", defines={
        "FILTER_PID": pid, "MAX_THREADS": threads, "MAX_EDGES": edges,
        **ustacks.defines(unwind, user=True, storage=16384, command_pid=pid if command else 0)})
    symbolizer = Symbolizer(prog.bpf)
    try:
        require_alive(pid)
        unwinding = EventUnwinding.setup(prog, symbolizer, pids=[pid], command=command,
                                         command_pid=pid)
        # unlocks first: a lock seen without its unlock would make false edges
        for symbols, fn in ((unlock_symbols, "on_unlock"), (lock_symbols, "on_lock")):
            for symbol in symbols:
                try:   # past a single-stepped first instruction (probes/emulated.py)
                    attach_entry_uprobe(prog, binary, fn, symbol, pid)
                except NotFoundError:
                    raise NotFoundError(f"no {symbol} in {binary} (give the library or "
                                        "binary that has it with --binary)") from None
        try:   # where threads are created (none: threads are shown without that stack)
            prog.attach_uprobe(binary, "on_create", symbol="pthread_create", pid=pid)
        except NotFoundError:
            pass
    except BaseException:
        prog.close()
        raise
    return LockGraph(prog, pid, symbolizer, unwinding)


def report(graph: LockGraph, cycle: list[int], by_pair: dict[tuple[int, int], Edge],
           out: Output) -> None:
    names = {m: "Mutex M%d (%s0x%016x)" % (i, f"{graph.names[m]} " if m in graph.names else "", m)
             for i, m in enumerate(cycle)}
    pairs = list(zip(cycle, cycle[1:] + cycle[:1]))
    creators = graph.creators()
    tids = list(dict.fromkeys(by_pair[p].tid for p in pairs))

    def obj() -> dict:
        def frames(site: tuple[int, int]) -> list[str]:
            return [name for _a, name in graph.stack(site)]
        threads = []
        for tid in tids:
            parent = creators.get(tid)
            threads.append({"tid": tid, "parent_tid": parent[0] if parent else None,
                            "parent_comm": parent[1] if parent else None,
                            "stack": frames(parent[2]) if parent else []})
        return {
            "type": "cycle",
            "mutexes": [{"address": m, "name": graph.names.get(m)} for m in cycle],
            "edges": [{"held": m, "wanted": n, "tid": by_pair[m, n].tid,
                       "comm": by_pair[m, n].comm,
                       "held_stack": frames(by_pair[m, n].held_site),
                       "wanted_stack": frames(by_pair[m, n].wanted_site)} for m, n in pairs],
            "threads": threads}

    def text() -> list[str]:
        lines = ["----------------", "Potential Deadlock Detected!", "",
                 "Cycle in lock order graph: %s" % " => ".join(names[m]
                                                               for m in cycle + cycle[:1]), ""]

        def stack_lines(site: tuple[int, int]) -> list[str]:
            return ["@ %016x %s" % (address, name) for address, name in graph.stack(site)]
        for m, n in pairs:
            e = by_pair[m, n]
            lines.append(f"{names[n]} acquired here while holding {names[m]} in Thread {e.tid} "
                         f"({e.comm}):")
            lines += stack_lines(e.wanted_site) + [""]
            lines.append(f"{names[m]} previously acquired by the same Thread {e.tid} "
                         f"({e.comm}) here:")
            lines += stack_lines(e.held_site) + [""]
        for tid in tids:
            parent = creators.get(tid)
            if parent:
                lines.append(f"Thread {tid} created by Thread {parent[0]} ({parent[1]}) here: ")
                lines += stack_lines(parent[2])
            else:
                lines.append(f"Could not find stack trace where Thread {tid} was created")
            lines.append("")
        return lines
    out.emit(text=text, json=obj)


@click.command("deadlock", context_settings={**options.TOOL_CONTEXT,
                                             "ignore_unknown_options": True})
@options.pid_option("-p")
@click.option("--binary", default="c", show_default=True,
              help="The library or binary whose lock functions are probed (libc: glibc "
                   "2.34+ has pthread in it; a static binary: its path).")
@click.option("--lock-symbols", default="pthread_mutex_lock", show_default=True,
              help="Comma-separated lock functions (first argument: the mutex).")
@click.option("--unlock-symbols", default="pthread_mutex_unlock", show_default=True,
              help="Comma-separated unlock functions (first argument: the mutex).")
@click.option("-t", "--threads", type=click.IntRange(1, 1 << 20), default=65536,
              show_default=True, help="Most threads traced.")
@click.option("-e", "--edges", type=click.IntRange(1, 1 << 20), default=65536,
              show_default=True, help="Most lock-order edges recorded.")
@click.option("--dump-graph", "dump_path", default=None, metavar="FILE",
              help="Write the mutex graph to FILE as JSON (BCC's node-link form), "
                   "rewritten every second and at the end.")
@ustacks.unwind_option()
@options.duration_option()
@options.output_options()
@options.standard
@click.argument("words", nargs=-1, type=click.UNPROCESSED, metavar="[PID] | [-- COMMAND]")
def command(pid, binary, lock_symbols, unlock_symbols, threads, edges, dump_path, unwind,
            duration, out, words):
    """Find lock-order inversions (potential deadlocks) between a process's mutexes."""
    if len(words) == 1 and words[0].isdigit():     # BCC's positional PID
        if pid is not None:
            raise UsageError("give the process once: PID or -p PID")
        pid, words = options.ProcessId().convert(words[0], None, None), ()
    if pid is None and not words:
        raise UsageError("deadlock traces one process: give its PID (or -p PID), or a "
                         "command after --")
    locks = tuple(s for s in lock_symbols.split(",") if s)
    unlocks = tuple(s for s in unlock_symbols.split(",") if s)
    if not locks or not unlocks:
        raise UsageError("--lock-symbols and --unlock-symbols need at least one function")
    check_writable(dump_path)
    target = Target.from_options(pid, words)
    try:
        graph = start(pid=target.pid, binary=binary, lock_symbols=locks,
                      unlock_symbols=unlocks, threads=threads, edges=edges,
                      command=tuple(words), unwind=unwind)
        try:
            graph.prog.ready()
            announce("Tracing... Hit Ctrl-C to end.")
            found: list[list[int]] = []

            next_dump = [time.monotonic() + DUMP_EVERY]

            def check() -> None:
                graph.note_process()
                if dump_path and time.monotonic() >= next_dump[0]:
                    next_dump[0] = time.monotonic() + DUMP_EVERY
                    dump_graph(graph, dump_path)
                if look(graph, out, found):
                    raise Stop("SIGINT")

            # the unwinder's rings (new processes, a held command) while waiting
            poll = graph.unwinding.poll if graph.unwinding is not None else None
            run_until_done(target, duration=duration, interval=CHECK_EVERY, on_interval=check,
                           poll=poll)
            if dump_path:   # the whole graph, also when a cycle ended the run
                dump_graph(graph, dump_path)
            if not found and not look(graph, out, found):
                mutexes = {m for e in graph.edges() for m in (e.held, e.wanted)}
                out.emit(text=f"No potential deadlock found ({len(mutexes)} mutexes "
                              f"in {len(graph.edges())} lock-order edges).",
                         json={"type": "none", "mutexes": len(mutexes),
                               "edges": len(graph.edges())})
            out.loss(graph.loss())
        finally:
            graph.close()
    finally:
        target.finish()


def node_link_data(graph: LockGraph) -> dict:
    """The graph as BCC's --dump-graph writes it (networkx's node-link form):
    nodes {"id": mutex} (here also "name" when known), links by node index with
    the thread that made the edge and the stack ids of both acquisitions (see
    stack_id; here also the stacks' frame names, leaf first)."""
    all_edges = graph.edges()
    mutexes = sorted({m for e in all_edges for m in (e.held, e.wanted)})
    index = {m: i for i, m in enumerate(mutexes)}
    return {"directed": True, "multigraph": False, "graph": {},
            "nodes": [{"id": m, **({"name": graph.names[m]} if m in graph.names else {})}
                      for m in mutexes],
            "links": [{"source": index[e.held], "target": index[e.wanted],
                       "thread_pid": e.tid, "thread_comm": e.comm,
                       "first_mutex_stack_id": stack_id(e.held_site),
                       "second_mutex_stack_id": stack_id(e.wanted_site),
                       "first_mutex_stack": [n for _a, n in graph.stack(e.held_site)],
                       "second_mutex_stack": [n for _a, n in graph.stack(e.wanted_site)]}
                      for e in sorted(all_edges, key=lambda e: (e.held, e.wanted))]}


def stack_id(site: tuple[int, int, int]) -> int:
    """A stack's identity for --dump-graph: the hash of a stack unwound from
    CFI, else (BCC's) the frame-pointer walk's id in the stack map."""
    return site[2] or site[0]


def dump_graph(graph: LockGraph, path: str) -> None:
    """Replace `path` whole (a reader never sees half a graph), as BCC
    rewrites it every second."""
    write_file(path, json.dumps(node_link_data(graph), indent=2).encode() + b"\n")


def look(graph: LockGraph, out: Output, found: list[list[int]]) -> bool:
    """Print the first cycle of the lock-order graph, if there is one."""
    all_edges = graph.edges()
    by_pair = {(e.held, e.wanted): e for e in all_edges}
    adjacency: dict[int, list[int]] = {}
    for e in all_edges:
        adjacency.setdefault(e.held, []).append(e.wanted)
    cycle = find_cycle(adjacency)
    if not cycle:
        return False
    found.append(cycle)
    report(graph, cycle, by_pair, out)
    return True
