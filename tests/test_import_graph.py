"""The package's import graph has no cycles, counting imports made inside
functions too (a lazy import hides a cycle; it does not remove it)."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "pytracekit"


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
            elif (node.module or "").startswith("pytracekit"):
                base = []
            else:
                continue
            target = ".".join(base + (node.module.split(".") if node.module else []))
            for alias in node.names:
                name = f"{target}.{alias.name}"
                found.add(name if name in modules else target)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in modules}
    return {m for m in found if m in modules and m != module}


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    return {m: _imports(m, p, modules) for m, p in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_cycle_finder_finds_a_planted_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_graph_sees_lazy_imports():
    graph = import_graph()
    # loader imports kernel.function_probes inside attach_kprobe only
    assert "pytracekit.kernel.function_probes" in graph["pytracekit.engine.loader"]


def test_no_import_cycles():
    assert cycles(import_graph()) == []


# The layers, lowest first: a module may import from its own layer and the ones
# below, never from a layer above (docs/DEVELOPING.md, "Layers"). A module's
# layer is the longest entry that prefixes its name.
LAYERS = {
    "pytracekit": 0,                # ground floor: errors, model, textsafe, outfile, digest
    "pytracekit.kernel": 1,         # what the kernel offers: BTF, headers, tracefs, perf, syscalls
    "pytracekit.symbolize": 2,      # addresses -> names, ELF/DWARF, unwinding, Python frames
    "pytracekit.engine": 3,         # compile, load, attach; a run's target, lifetime, settings
    "pytracekit.probes": 4,         # probe specs, expressions, generated BPF C
    "pytracekit.collect": 5,        # ring buffers, drained maps, stack maps, recordings
    "pytracekit.render": 6,         # results as text, JSON lines and files
    "pytracekit.cli": 7,            # the options every tool shares, stdout
    "pytracekit.families": 8,       # what a family of tools shares
    "pytracekit.fleet": 9,          # export and continuous profiling
    "pytracekit.api": 9,            # the public Python API
    "pytracekit.tools": 10,         # one module per tool
    "pytracekit.cli.command": 11,   # the command group: finds and runs the tools
    "pytracekit.__main__": 11,
}
# Modules allowed directly in pytracekit/ (the rest belong in a layer package).
GROUND_FLOOR = {"pytracekit", "pytracekit.errors", "pytracekit.model", "pytracekit.textsafe",
                "pytracekit.outfile", "pytracekit.digest", "pytracekit.api", "pytracekit.__main__"}
# Upward imports still to be removed, each with why it is there; the test
# fails when one disappears, so that this list only shrinks.
KNOWN_UPWARD = {
    # uprobe_multi's feature check reads libc's symbols to find an offset.
    ("pytracekit.kernel.features", "pytracekit.symbolize.elf"),
}


def layer(module: str) -> int:
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        rank = LAYERS.get(".".join(parts[:n]))
        if rank is not None:
            return rank
    raise AssertionError(f"{module} is in no layer")


def upward_imports(graph: dict[str, set[str]]) -> set[tuple[str, str]]:
    return {(m, t) for m, targets in graph.items() for t in targets if layer(t) > layer(m)}


def test_layer_finder_sees_an_upward_import():
    graph = {"pytracekit.model": {"pytracekit.families.periodic"},
             "pytracekit.tools.x": {"pytracekit.model"}}
    assert upward_imports(graph) == {("pytracekit.model", "pytracekit.families.periodic")}


def test_every_module_is_in_a_layer():
    flat = {m for m in import_graph() if m.count(".") <= 1 and m.split(".")[-1] not in
            {p.split(".")[1] for p in LAYERS if p.count(".") == 1}}
    assert flat <= GROUND_FLOOR, f"put these in a layer package: {sorted(flat - GROUND_FLOOR)}"


def test_no_import_from_a_higher_layer():
    found = upward_imports(import_graph())
    assert found - KNOWN_UPWARD == set(), "imports from a higher layer"
    assert KNOWN_UPWARD - found == set(), "fixed: remove these from KNOWN_UPWARD"
