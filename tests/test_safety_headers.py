"""Headers come only from pytracekit's own trees.

BCC's clang puts the process's working directory first on the include path,
so the loader compiles from the program's own header directory: headers
planted where root runs pytracekit (each `#error planted`) change nothing.
The header cache refuses what another user owns or could write."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT, pytracekit

pytestmark = pytest.mark.root

# One tool per family of BPF headers (bpf/ptk_*.h) and attach type.
DRY_RUNS = [
    ["hardirqs"], ["profile", "-F", "99", "1"], ["tcpconnect"], ["biolatency"],
    ["statsnoop"], ["funclatency", "c:getpid"], ["stackcount", "t:syscalls:sys_enter_getpid"],
]
SEARCH_PREFIXES = ("include/generated/uapi/", "include/generated/", "include/uapi/", "include/",
                   "arch/x86/include/generated/uapi/", "arch/x86/include/generated/",
                   "arch/x86/include/uapi/", "arch/x86/include/")


def header_names() -> set[str]:
    """Every name a program or BCC's helpers could #include: the include
    tree's files as found through each -I, bpf/'s headers, vmlinux.h, bcc/."""
    from pytracekit.kernel import headers
    from pytracekit.engine.loader import BPF_DIR
    source = headers.include_tree().source
    names = {"vmlinux.h", "bcc/helpers.h", "bcc/bpf.h", "bcc/bpf_workaround.h", "bcc/proto.h"}
    for path in source.rglob("*.h"):
        rel = str(path.relative_to(source))
        names.add(rel)
        names.update(rel[len(p):] for p in SEARCH_PREFIXES if rel.startswith(p))
    names.update(p.name for p in BPF_DIR.glob("*.h"))
    names.update(p.name for p in BPF_DIR.glob("*.inc.c"))
    return names


@pytest.fixture
def planted(tmp_path) -> Path:
    return _plant(tmp_path / "cwd")


def _plant(cwd: Path) -> Path:
    """cwd with every header name in it, each `#error planted`."""
    for name in header_names():
        (cwd / name).parent.mkdir(parents=True, exist_ok=True)
        (cwd / name).write_text("#error planted\n")
    assert (cwd / "linux/types.h").exists() and (cwd / "asm/page.h").exists()
    return cwd


def run_in(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """pytracekit ARGS from `cwd`, this checkout's code (not an installed copy)."""
    return pytracekit(*args, cwd=cwd, env={"PYTHONPATH": str(ROOT)})


def marker_lines(out: str, marker: str) -> list[str]:
    return [l for l in out.splitlines() if l.endswith(" " + marker)]


def test_planted_headers_change_nothing(workload, planted, tmp_path):
    marker = str(tmp_path / "planted-marker")
    here = run_in(planted, "opensnoop", "--", workload, "open", marker, "7")
    assert here.returncode == 0, here.stderr
    assert "planted" not in here.stderr
    elsewhere = pytracekit("opensnoop", "--", workload, "open", marker, "7")
    assert elsewhere.returncode == 0, elsewhere.stderr
    assert len(marker_lines(here.stdout, marker)) == len(marker_lines(elsewhere.stdout, marker)) == 7


def test_relative_paths_still_mean_the_working_directory(workload, planted):
    """Compiling from another directory must not change what ./binary means
    (uprobes are attached while BCC compiles)."""
    os.symlink(workload, planted / "workload")
    res = run_in(planted, "funccount", "./workload:counted_function", "--", "./workload",
                 "calls", "5")
    assert res.returncode == 0, res.stderr
    assert res.stdout.split()[-2:] == ["counted_function", "5"]


@pytest.fixture(scope="module")
def planted_dry_runs(tmp_path_factory) -> dict:
    """DRY_RUNS' --dry-runs, each started in one planted directory, on two
    long-lived processes (tests/cli_workers.py: LLVM is loaded once per process)."""
    from cli_workers import run_all
    cwd = _plant(tmp_path_factory.mktemp("planted") / "cwd")
    return run_all({args[0]: [*args, "--dry-run"] for args in DRY_RUNS}, cwd=cwd)


@pytest.mark.parametrize("args", DRY_RUNS, ids=lambda a: a[0])
def test_every_header_family_compiles_from_a_planted_directory(args, planted_dry_runs):
    res = planted_dry_runs[args[0]]
    if isinstance(res, Exception):
        raise res
    assert res.returncode == 0, res.stderr
    assert "compiled and loaded" in res.stdout


def _run_with_cache(cache: Path) -> subprocess.CompletedProcess:
    return pytracekit("syscount", "-d", "0.2", env={"PYTRACEKIT_CACHE": str(cache)})


def _one_line(res: subprocess.CompletedProcess) -> str:
    lines = [l for l in res.stderr.splitlines() if l.strip()]
    assert res.returncode == 1 and len(lines) == 1, res.stderr
    return lines[0]


def test_cache_is_created_root_owned_and_not_writable_by_others(tmp_path):
    old = os.umask(0)    # even so: directories 0755, files 0600
    try:
        res = _run_with_cache(tmp_path / "cache")
    finally:
        os.umask(old)
    assert res.returncode == 0, res.stderr
    paths = [tmp_path / "cache"] + list((tmp_path / "cache").rglob("*"))
    assert len(paths) > 20
    for path in paths:
        st = path.lstat()
        assert st.st_uid == 0 and not st.st_mode & 0o022, (path, oct(st.st_mode))


@pytest.fixture(scope="module")
def built_cache(tmp_path_factory) -> Path:
    """A header cache one run built (copied for each test that spoils it: the
    build compiles the BTF headers and the program, the copy does not)."""
    cache = tmp_path_factory.mktemp("built") / "cache"
    res = _run_with_cache(cache)
    assert res.returncode == 0, res.stderr
    return cache


@pytest.mark.parametrize("tamper", ["chmod-cache", "chown-programs", "chmod-header",
                                    "chown-types-h", "chown-link-to-cache"])
def test_cache_another_user_could_write_is_refused(tmp_path, tamper, built_cache):
    cache = tmp_path / "cache"
    shutil.copytree(built_cache, cache, symlinks=True)   # modes too (copy2, copystat)
    assert _run_with_cache(cache).returncode == 0        # the copy is trusted as it is
    # the kernel's key directory (beside it: the dataclass methods' files, engine/dccache.py)
    key = next(p for p in cache.iterdir() if p.is_dir())
    if tamper == "chmod-cache":
        cache.chmod(0o757)
        target = cache
    elif tamper == "chown-programs":
        target = key / "programs"
        os.chown(target, 65534, 65534)
    elif tamper == "chmod-header":
        target = next((key / "programs").rglob("vmlinux.h"))
        target.chmod(0o646)
    elif tamper == "chown-types-h":
        target = key / "kernel/include/linux/types.h"
        os.chown(target, 65534, 65534)
    else:
        real = tmp_path / "elsewhere"
        cache.rename(real)
        cache.symlink_to(real)
        assert _run_with_cache(cache).returncode == 0     # root's own link is followed
        os.chown(cache, 65534, 65534, follow_symlinks=False)
        target = cache
    line = _one_line(_run_with_cache(cache))
    assert line.startswith(f"pytracekit syscount: error: refusing the header cache {target}: ")
    assert "PYTRACEKIT_CACHE" in line


def test_world_writable_directory_above_the_cache_is_refused(tmp_path):
    above = tmp_path / "open"
    above.mkdir(mode=0o777)
    above.chmod(0o777)
    line = _one_line(_run_with_cache(above / "cache"))
    assert f"refusing a directory above the header cache {above}: others can write it" in line
    above.chmod(0o1777)    # sticky, like /tmp: others cannot rename our cache
    assert _run_with_cache(above / "cache").returncode == 0
