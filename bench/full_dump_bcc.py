"""The baseline for bench_startup: the same program through BCC, compiled
against the whole BTF dump (what `bpftool btf dump ... format c` gives, minus
the types BCC's own uapi header defines) instead of a per-program header.

Usage: full_dump_bcc.py FILE.py  (compiles FILE's PROGRAM; signals
PYTRACEKIT_READY_FD once attached)
"""
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from pytracekit.kernel import btf as btfmod, headers, tracefs  # noqa: E402
from pytracekit.engine.loader import expand_source  # noqa: E402
from pytracekit.engine.runner import signal_ready  # noqa: E402


def full_dump_dir(tree: headers.IncludeTree) -> Path:
    """A vmlinux.h with every BTF type (cached: generating it is not what we time)."""
    directory = tree.root / "full-dump"
    header = directory / "vmlinux.h"
    if not header.exists():
        kbtf = btfmod.vmlinux()
        uapi = headers.read_names(tree.root / "bcc-uapi-types.txt")
        idents = headers.read_names(tree.root / "bcc-uapi-idents.txt")
        body = headers.drop_definitions(
            kbtf.dump_c(range(1, kbtf.type_count())),
            headers.read_names(tree.source / "base-types.txt") | uapi,
            idents | headers.BASE_MACROS)
        headers.write_atomic(header, "#include <uapi/linux/ptrace.h>\n" + body)
    return directory


def main() -> None:
    tracefs.tracefs_root()
    tree = headers.include_tree()
    if len(sys.argv) > 1 and sys.argv[1] == "--prepare":
        full_dump_dir(tree)
        return
    import runpy
    source = expand_source(runpy.run_path(sys.argv[1])["PROGRAM"])
    directory = full_dump_dir(tree)
    os.environ["BCC_KERNEL_SOURCE"] = str(tree.source)
    import bcc
    b = bcc.BPF(text=source.encode(), cflags=[f"-I{directory}", "-Wno-macro-redefined"])
    signal_ready()
    try:
        time.sleep(3600)
    except KeyboardInterrupt:
        pass
    b.cleanup()


if __name__ == "__main__":
    main()
