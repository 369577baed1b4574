"""/tmp/perf-PID.map is anyone's to plant: only a regular file owned by the
process's user or root is read (as perf does), at most 64 MiB of it; a FIFO
there never hangs a tool. Control characters in names (perf maps, ELF
symbols, comm) are printed and written as \\xNN."""
import os
import re
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import NOBODY, pytracekit, wait_until
from pytracekit.symbolize import symbols
from pytracekit.model import Frame, Sample
from pytracekit.symbolize.symbols import PerfMap
from pytracekit.textsafe import cstr, printable

ESC_NAME = "evil\x1b[2Jname"


# -- pure ----------------------------------------------------------------------

def test_control_characters_are_escaped():
    assert printable("evil\x1b[2Jname") == "evil\\x1b[2Jname"
    assert printable("a\tb\nc\x00d\x7fe\x9bf") == "a\\x09b\\x0ac\\x00d\\x7fe\\x9bf"
    assert printable("std::vector<int>::push_back(int&&) é ✓") == \
        "std::vector<int>::push_back(int&&) é ✓"
    assert cstr(b"wl\x1b]0;pwned\x07\x00junk") == "wl\\x1b]0;pwned\\x07"
    assert Frame("f\x1bg").name == "f\\x1bg"
    assert Sample((), 1, comm="c\x1b").comm == "c\\x1b"


def test_fifo_is_not_read_and_does_not_block(tmp_path):
    fifo = tmp_path / "perf-1.map"
    os.mkfifo(fifo)
    done = []
    t = threading.Thread(target=lambda: done.append(PerfMap(str(fifo)).refresh(os.geteuid())),
                         daemon=True)
    t.start()
    t.join(10)
    assert done == [False]


def test_link_is_not_followed(tmp_path):
    real = tmp_path / "real.map"
    real.write_text("1000 10 jit_a\n")
    link = tmp_path / "perf-1.map"
    link.symlink_to(real)
    pm = PerfMap(str(link))
    assert not pm.refresh(os.geteuid()) and pm.lookup(0x1004) is None


def test_only_the_first_64_mib_are_read(tmp_path, monkeypatch):
    monkeypatch.setattr(symbols, "PERF_MAP_LIMIT", 30)
    path = tmp_path / "perf-1.map"
    path.write_text("1000 10 first\n2000 10 second\n3000 10 third\n")   # 14 + 15 + 14 bytes
    pm = PerfMap(str(path))
    assert pm.refresh(os.geteuid())
    assert [e[2] for e in pm.entries] == ["first", "second"]


@pytest.mark.root
def test_owner_must_be_the_process_user_or_root(tmp_path):
    path = tmp_path / "perf-1.map"
    path.write_text("1000 10 jit_a\n")
    os.chown(path, 65534, 65534)
    assert not PerfMap(str(path)).refresh(uid=1000)     # another user's file
    assert PerfMap(str(path)).refresh(uid=65534)        # the process's own
    path.chmod(0o644)
    os.chown(path, 0, 0)
    assert PerfMap(str(path)).refresh(uid=65534)        # root's


# -- profile against the workload's JIT code -------------------------------------

def map_path(pid: int) -> Path:
    return Path(f"/tmp/perf-{pid}.map")


class Jit:
    """The workload spinning in JIT code (`jit MS NAME`), killed afterwards."""

    def __init__(self, workload: str, name: str, *, argv0: str | None = None,
                 prefix: tuple[str, ...] = ()) -> None:
        self.proc = subprocess.Popen([*prefix, argv0 or workload, "jit", "20000", name],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.pid = self.proc.pid
        self.map = map_path(self.pid)

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        if self.map.exists() or self.map.is_symlink():
            self.map.unlink()


@pytest.fixture
def jit(workload):
    made = []

    def start(name: str, **kw) -> Jit:
        made.append(Jit(workload, name, **kw))
        return made[-1]
    yield start
    for j in made:
        j.close()


def profile_pid(pid: int, *extra: str) -> subprocess.CompletedProcess:
    start = time.monotonic()
    res = pytracekit("profile", "-F", "199", "-f", "-U", "-p", str(pid), *extra, "1",
                     timeout=90)
    assert res.returncode == 0, res.stderr
    assert time.monotonic() - start < 60
    return res


def top_stack(out: str) -> str:
    return max(out.splitlines(), key=lambda l: int(l.rsplit(" ", 1)[1])).rsplit(" ", 1)[0]


@pytest.mark.root
def test_a_planted_fifo_changes_nothing_and_hangs_nothing(jit):
    plain = jit("-")
    fifo = jit("-")
    os.mkfifo(fifo.map)
    without_map = top_stack(profile_pid(plain.pid).stdout)
    with_fifo = top_stack(profile_pid(fifo.pid).stdout)
    # unnamed JIT code: anonymous memory and its address (each process's own)
    assert re.search(r";main;\[anon\]\+0x[0-9a-f]+$", without_map), without_map
    assert re.search(r";main;\[anon\]\+0x[0-9a-f]+$", with_fifo), with_fifo
    assert with_fifo.split(";")[1:-1] == without_map.split(";")[1:-1]


@pytest.mark.root
def test_a_map_another_user_owns_is_ignored(jit):
    j = jit("jit_spin_loop")
    assert wait_until(lambda: j.map.exists() and j.map.stat().st_size > 0)
    os.chown(j.map, 65534, 65534)
    top = top_stack(profile_pid(j.pid).stdout)
    assert re.search(r";main;\[anon\]\+0x[0-9a-f]+$", top), top


@pytest.mark.root
def test_the_process_users_own_map_names_frames(jit, workload):
    if subprocess.run(NOBODY + [workload, "child"]).returncode != 0:
        pytest.skip(f"user nobody cannot run {workload}")
    j = jit("jit_spin_loop", prefix=tuple(NOBODY))
    assert wait_until(lambda: j.map.exists() and j.map.stat().st_size > 0)
    assert j.map.stat().st_uid == 65534
    top = top_stack(profile_pid(j.pid).stdout)
    assert top.endswith(";main;jit_spin_loop"), top


@pytest.mark.root
def test_control_characters_in_names_and_comm_are_escaped(jit, workload, tmp_path):
    argv0 = tmp_path / "wl\x1b[2Jx"
    argv0.symlink_to(workload)
    j = jit(ESC_NAME, argv0=str(argv0))
    assert wait_until(lambda: j.map.exists() and j.map.stat().st_size > 0)
    html = tmp_path / "out.html"
    res = profile_pid(j.pid, "--output", str(html), "--format", "flamegraph")
    assert "\x1b" not in res.stdout and "\x1b" not in res.stderr
    top = top_stack(res.stdout)
    assert top.startswith("wl\\x1b[2Jx;") and top.endswith(";main;evil\\x1b[2Jname"), top
    page = html.read_text()
    assert "\x1b" not in page and "x1b[2Jname" in page
