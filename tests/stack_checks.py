"""Helpers for the stack tools' tests: parse --json output, find stacks."""
import json
from pathlib import Path

import schema_check

SCHEMAS = Path(__file__).resolve().parent.parent / "pytracekit" / "schemas"


def parse_json(stdout: str, tool: str) -> tuple[dict, list[dict], dict]:
    """(header, stacks, loss) of a stack tool's --json output, validated."""
    schema = json.loads((SCHEMAS / f"{tool}.schema.json").read_text())
    objs = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    for obj in objs:
        schema_check.validate(obj, schema)
    header = next(o for o in objs if o["type"] == "profile")
    stacks = [o for o in objs if o["type"] == "stack"]
    loss = next(o for o in objs if o["type"] == "loss")
    return header, stacks, loss


def names(stack: dict, kind: str | None = None) -> list[str]:
    return [f["name"] for f in stack["frames"] if kind is None or f["kind"] == kind]


def contains_run(seq: list[str], run: list[str]) -> bool:
    """True when `run` appears in `seq` as consecutive items."""
    return any(seq[i:i + len(run)] == run for i in range(len(seq) - len(run) + 1))


def split_slept(stdout: str) -> tuple[dict[str, int], str]:
    """The workload's `slept_ns=T longest_ns=L` line (sleeptimed mode), as
    {"slept_ns": T, "longest_ns": L}, and the tool's output."""
    lines = stdout.splitlines()
    [slept] = [line for line in lines if line.startswith("slept_ns=")]
    lines.remove(slept)
    return {k: int(v) for k, v in (w.split("=") for w in slept.split())}, "\n".join(lines)


def fallback_symbolizer(stack_hash: int, addresses: list[int]):
    """A Symbolizer whose unwinder stored `addresses` under `stack_hash` as
    the frame-pointer fallback (a process not loaded yet): pure, no BPF."""
    from types import SimpleNamespace
    from pytracekit.symbolize.symbols import Symbolizer
    from pytracekit.symbolize.unwinder import FALLBACK

    class Table(dict):
        Key = staticmethod(lambda value: value)

    sym = Symbolizer()
    sym.ustacks = Table({stack_hash: SimpleNamespace(frames=addresses, len=len(addresses),
                                                     flags=FALLBACK)})
    sym.unwinder = SimpleNamespace(module=lambda _module_id: None)
    return sym
