"""Run every benchmark module (bench/bench_*.py) in turn; each prints a Markdown table.

    python -m bench [--quick] [SECTION...]

SECTION picks modules by a part of their name (`unwind`, `python`, `profile`); --quick
runs the sections that support it with short durations (does it work end to end?)."""
import importlib
import pkgutil
import sys
from pathlib import Path

import bench
from bench import common


def main(args: list[str]) -> int:
    common.QUICK = "--quick" in args
    selected = [a for a in args if a != "--quick"]
    names = sorted(m.name for m in pkgutil.iter_modules(bench.__path__)
                   if m.name.startswith("bench_"))
    if selected:
        names = [n for n in names if any(s in n for s in selected)]
    for name in names:
        print(f"\n## {name[len('bench_'):]}\n", flush=True)
        importlib.import_module(f"bench.{name}").main()
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    sys.exit(main(sys.argv[1:]))
