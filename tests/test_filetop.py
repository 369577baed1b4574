"""filetop against ground truth: a script does a known number of reads and
writes of known sizes on a marker file (on fd 100, so `perf stat` can count
the same system calls with a filter on the fd: the oracle)."""
import json
import subprocess
import sys
import textwrap

import pytest

from conftest import Tool, pytracekit
from netns_fixture import events_of, json_objects

WRITES, READS, SIZE = 12, 30, 4096
IO = textwrap.dedent(f"""
    import ctypes, json, os, sys
    marker, truth = sys.argv[1], sys.argv[2]
    libc = ctypes.CDLL(None, use_errno=True)

    def vector_call(number, data):     # preadv(2)/pwritev(2) themselves: glibc
        buf = ctypes.create_string_buffer(data, len(data))  # calls the *v2 forms
        iov = (ctypes.c_void_p * 2)(ctypes.addressof(buf), len(data))
        assert libc.syscall(number, 100, iov, 1, 0, 0) == len(data)
    fd = os.open(marker, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(fd, 100)
    os.close(fd)
    for _ in range({WRITES}):
        os.write(100, b"w" * {SIZE})
    os.pwrite(100, b"p" * 100, 0)
    os.writev(100, [b"a" * 10, b"b" * 20])
    vector_call(296, b"c" * 40)                           # pwritev
    os.pwritev(100, [b"d" * 50], 0, os.RWF_SYNC)          # pwritev2
    os.lseek(100, 0, os.SEEK_SET)
    for _ in range({READS}):
        assert len(os.read(100, 1000)) == 1000
    assert len(os.pread(100, 500, 0)) == 500
    assert os.readv(100, [bytearray(7)]) == 7
    vector_call(295, b"." * 9)                            # preadv
    assert os.preadv(100, [bytearray(11)], 0, os.RWF_HIPRI) == 11   # preadv2
    pipe_r, pipe_w = os.pipe()            # not a regular file: only with -a
    os.write(pipe_w, b"x")
    os.read(pipe_r, 1)
    os.close(100)
    with open(truth, "w") as f:
        json.dump({{"pid": os.getpid()}}, f)
""")
# write, pwrite, writev, pwritev, pwritev2 / read, pread, readv, preadv, preadv2
WANT = {"reads": READS + 4, "writes": WRITES + 4, "rbytes": READS * 1000 + 500 + 7 + 9 + 11,
        "wbytes": WRITES * SIZE + 100 + 30 + 40 + 50}


def perf_count(counts_file) -> int:
    return sum(int(line.split(",")[0]) for line in counts_file.read_text().splitlines()
               if "syscalls:" in line)


@pytest.mark.root
def test_calls_and_bytes_per_file_as_perf_counts_them(tmp_path):
    script, marker, truth = tmp_path / "io.py", tmp_path / "filetop-marker", tmp_path / "t.json"
    script.write_text(IO)
    reads, writes = tmp_path / "reads.csv", tmp_path / "writes.csv"
    events = lambda kind, calls: [a for call in calls for a in (  # noqa: E731
        "-e", f"syscalls:sys_enter_{call}", "--filter", "fd == 100")]
    with Tool("filetop", "--json", "--interval", "60") as tool:
        perf = subprocess.run(
            ["perf", "stat", "-x,", "-o", str(reads),
             *events("r", ("read", "pread64", "readv", "preadv", "preadv2")),
             "--", "perf", "stat", "-x,", "-o", str(writes),
             *events("w", ("write", "pwrite64", "writev", "pwritev", "pwritev2")),
             "--", sys.executable, str(script), str(marker), str(truth)],
            capture_output=True, text=True, timeout=60)
        out, err = tool.stop()
    assert perf.returncode == 0, perf.stderr
    pid = json.loads(truth.read_text())["pid"]
    rows = [o for o in events_of(json_objects(out, "filetop"), "file")
            if o["file"] == marker.name]
    assert [(r["pid"], r["tid"], r["file_type"]) for r in rows] == [(pid, pid, "R")], err
    assert {k: rows[0][k] for k in WANT} == WANT
    assert (perf_count(reads), perf_count(writes)) == (WANT["reads"], WANT["writes"])
    # no pipe without -a
    assert not [o for o in events_of(json_objects(out, "filetop"), "file")
                if o["pid"] == pid and o["file_type"] != "R"]


@pytest.mark.root
def test_command_text_columns_and_all_files(tmp_path):
    script, marker, truth = tmp_path / "io.py", tmp_path / "filetop-marker", tmp_path / "t.json"
    script.write_text(IO)
    res = pytracekit("filetop", "-C", "-S", "-a", "-s", "writes", "--interval", "60",
                     "--", sys.executable, str(script), str(marker), str(truth))
    assert res.returncode == 0, res.stderr
    pid = json.loads(truth.read_text())["pid"]
    lines = [line for line in res.stdout.splitlines() if line.strip()]
    assert lines[0].split() == ["TID", "COMM", "READS", "WRITES", "R_Kb", "W_Kb", "T", "FILE"]
    rows = {r[-1]: r for r in (line.split() for line in lines[1:])}
    assert rows[marker.name][0] == str(pid)
    assert rows[marker.name][2:7] == [str(WANT["reads"]), str(WANT["writes"]),
                                      str(WANT["rbytes"] // 1024), str(WANT["wbytes"] // 1024),
                                      "R"]
    # -a: the pipe (one write, one read of 1 byte), type O; -s writes: the marker first
    pipes = [r for r in rows.values() if r[6] == "O" and r[0] == str(pid)]
    assert [r[2:6] + [r[7].startswith("[inode:")] for r in pipes] == [["1", "1", "0", "0", True]]
    assert lines[1].split()[-1] == marker.name
