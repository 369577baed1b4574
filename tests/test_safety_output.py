"""Outputs are written atomically (pytracekit/outfile.py): a link planted at
the output path is replaced, never followed; a full disk leaves the old file
intact, no temporary file behind, and ends the run with status 1 and one line;
an unwritable directory is refused before tracing starts."""
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from conftest import ROOT, pytracekit
from pytracekit import outfile
from pytracekit.errors import PytracekitError, UsageError


def error_lines(stderr: str) -> list[str]:
    assert "Traceback" not in stderr, stderr
    return [l for l in stderr.splitlines() if "error" in l.lower()]


def leftovers(directory) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


@pytest.fixture
def victim(tmp_path):
    path = tmp_path / "victim"
    path.write_text("precious\n")
    return path


@pytest.fixture
def full_dir(tmp_path):
    """A 64 KiB tmpfs holding `out` ("old\\n") and a filler up to ENOSPC."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "full"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], check=True)
    try:
        (mnt / "out").write_text("old\n")
        fd = os.open(mnt / "filler", os.O_WRONLY | os.O_CREAT)
        try:
            while os.write(fd, b"x" * 4096):
                pass
        except OSError:
            pass
        os.close(fd)
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


@pytest.fixture
def read_only_dir(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "ro"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


# -- the helper ----------------------------------------------------------------

def test_planted_link_is_replaced_not_followed(tmp_path, victim):
    out = tmp_path / "out.html"
    out.symlink_to(victim)
    outfile.write_file(out, b"<html>")
    assert victim.read_text() == "precious\n"
    assert not out.is_symlink() and out.read_bytes() == b"<html>"
    assert leftovers(tmp_path) == []


def test_mode_is_what_open_would_give(tmp_path):
    old = os.umask(0o027)
    try:
        outfile.write_file(tmp_path / "f", b"x")
    finally:
        os.umask(old)
    assert (tmp_path / "f").stat().st_mode & 0o777 == 0o640


def test_full_disk_keeps_the_old_file_and_leaves_no_temporary(full_dir):
    with pytest.raises(PytracekitError) as err:
        outfile.write_file(full_dir / "out", b"new" * 10000)
    assert err.value.message == f"cannot write {full_dir / 'out'}: No space left on device"
    assert (full_dir / "out").read_text() == "old\n"
    assert leftovers(full_dir) == []


def test_a_device_is_written_in_place_and_its_errors_are_one_line():
    with pytest.raises(PytracekitError) as err:
        outfile.write_file("/dev/full", b"data")
    assert err.value.message == "cannot write /dev/full: No space left on device"
    assert os.path.exists("/dev/full") and not os.path.isfile("/dev/full")
    outfile.write_file("/dev/null", b"data")
    assert not os.path.isfile("/dev/null")


def test_dev_stdout_is_written_in_place_never_replaced(tmp_path):
    out = tmp_path / "out.txt"
    code = ("import sys; from pytracekit import outfile; print('printed', flush=True); "
            "outfile.write_file(sys.argv[1], b'written\\n')")
    for path in ("/dev/stdout", "/proc/self/fd/1", "/dev/fd/1"):
        with open(out, "w") as f:
            subprocess.run([sys.executable, "-c", code, path], stdout=f, check=True,
                           cwd=ROOT)
        assert out.read_text() == "printed\nwritten\n", path
    assert os.readlink("/dev/stdout") == "/proc/self/fd/1"
    assert leftovers(Path("/dev")) == []


def test_own_fifo_is_written_in_place(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(open(fifo, "rb").read()))
    reader.start()
    outfile.write_file(fifo, b"through the pipe")
    reader.join(10)
    assert got == [b"through the pipe"]


@pytest.mark.root
def test_fifo_or_link_another_user_planted_is_replaced(tmp_path, victim):
    fifo, link = tmp_path / "fifo", tmp_path / "link"
    os.mkfifo(fifo)
    os.chown(fifo, 65534, 65534)
    link.symlink_to("/dev/null")
    os.chown(link, 65534, 65534, follow_symlinks=False)
    for path in (fifo, link):
        outfile.write_file(path, b"result")     # would hang on the FIFO if written in place
        assert path.is_file() and not path.is_symlink() and path.read_bytes() == b"result"


def test_unwritable_directory_is_refused_before_tracing(read_only_dir):
    with pytest.raises(UsageError) as err:
        outfile.check_writable(str(read_only_dir / "x.html"))
    assert err.value.message == (f"cannot write {read_only_dir / 'x.html'}: Read-only file "
                                 "system (give a path you can write)")


# -- the tools -----------------------------------------------------------------
# The workload spins 300 ms of CPU time (spincpu), not of wall time: the
# samples the checks need come however loaded the machine is.

@pytest.mark.root
def test_profile_output_through_a_planted_link(workload, tmp_path, victim):
    out = tmp_path / "profile.folded"
    out.symlink_to(victim)
    res = pytracekit("profile", "-F", "199", "--output", str(out), "--format", "folded",
                     "--", workload, "spincpu", "300")
    assert res.returncode == 0, res.stderr
    assert victim.read_text() == "precious\n"
    assert not out.is_symlink() and "spin_inner" in out.read_text()
    assert leftovers(tmp_path) == []


@pytest.mark.root
def test_profile_output_on_a_full_disk(workload, full_dir):
    out = full_dir / "out"
    res = pytracekit("profile", "-F", "199", "--output", str(out), "--format", "flamegraph",
                     "--", workload, "spincpu", "300")
    assert res.returncode == 1, res.stderr
    assert error_lines(res.stderr) == [
        f"pytracekit profile: error: cannot write {out}: No space left on device"]
    assert out.read_text() == "old\n" and leftovers(full_dir) == []


@pytest.mark.root
def test_profile_output_to_dev_full(workload):
    res = pytracekit("profile", "-F", "199", "--output", "/dev/full", "--format", "folded",
                     "--", workload, "spincpu", "300")
    assert res.returncode == 1, res.stderr
    assert error_lines(res.stderr) == [
        "pytracekit profile: error: cannot write /dev/full: No space left on device"]


@pytest.mark.root
def test_record_output_through_a_planted_link_and_on_a_full_disk(workload, tmp_path, victim,
                                                                 full_dir):
    from pytracekit.collect import recording
    out = tmp_path / "run.ptk"
    out.symlink_to(victim)
    res = pytracekit("record", "-o", str(out), "--", workload, "spincpu", "300")
    assert res.returncode == 0, res.stderr
    assert victim.read_text() == "precious\n" and not out.is_symlink()
    assert recording.load(str(out)).total > 0
    full = full_dir / "out"
    res = pytracekit("record", "-o", str(full), "--", workload, "spincpu", "300")
    assert res.returncode == 1, res.stderr
    assert error_lines(res.stderr) == [
        f"pytracekit record: error: cannot write {full}: No space left on device"]
    assert full.read_text() == "old\n" and leftovers(full_dir) == []


@pytest.mark.root
def test_cprofile_windows_on_a_full_disk(full_dir):
    res = pytracekit("cprofile", "--dir", str(full_dir), "--every", "0.3", "-d", "1", "-p", "1",
                     "--json")
    assert res.returncode == 1, res.stderr
    lines = error_lines(res.stderr)
    assert len(lines) == 1, res.stderr
    assert re.fullmatch(rf"pytracekit cprofile: error: (\d+) of \1 windows not written \(last: "
                        rf"cannot write {full_dir}/cpu-\S+\.pb\.gz: No space left on device\)",
                        lines[0]), lines[0]
    assert leftovers(full_dir) == [] and not list(full_dir.glob("*.pb.gz"))


@pytest.mark.root
@pytest.mark.parametrize("args", [["profile", "--output", "{dir}/x.html", "1"],
                                  ["record", "-o", "{dir}/x.ptk", "1"],
                                  ["cprofile", "--dir", "{dir}", "-d", "1"]],
                         ids=lambda a: a[0])
def test_unwritable_output_is_refused_at_start(args, read_only_dir):
    res = pytracekit(*(a.format(dir=read_only_dir) for a in args))
    assert res.returncode == 2, res.stderr
    lines = [l for l in res.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and "Read-only file system" in lines[0], res.stderr
