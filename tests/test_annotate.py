"""annotate: the workload's hot_loop (one cheap line, then a hot loop on one line)
annotated live (-p, -O0 with frame pointers) and from a recording (-O2 without);
addr2line is the oracle for every instruction's line. Without root: the leaf
addresses kept through merging and recordings, a missing source, a rebuilt binary."""
import json
import os
import shutil
import subprocess
import time

import pytest

from conftest import WORKLOAD_SRC, Tool, pytracekit
from schema_check import schema_of, validate
from pytracekit.collect import recording
from pytracekit.symbolize.annotation import annotate
from pytracekit.errors import NotFoundError
from pytracekit.model import Frame, ModuleInfo, Sample, StackProfile
from pytracekit.render import annotate as render
from pytracekit.collect.stack_maps import merge_by_name


def _marked_line(marker: str) -> tuple[int, str]:
    """The workload.c line holding `marker`: its number and stripped text."""
    for number, text in enumerate(WORKLOAD_SRC.read_text().split("\n"), 1):
        if marker in text:
            return number, text.strip()
    raise AssertionError(marker)


HOT, HOT_TEXT = _marked_line("/* annotate: hot loop */")
CHEAP, _ = _marked_line("/* annotate: cheap line */")


def _symbol(binary: str, name: str) -> tuple[int, int]:
    """(start, end) of a function, from nm (the oracle for the function's range)."""
    out = subprocess.run(["nm", "-S", "--defined-only", binary], capture_output=True,
                         text=True, check=True).stdout
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[3] == name:
            return int(parts[0], 16), int(parts[0], 16) + int(parts[1], 16)
    raise AssertionError(name)


def _addr2line(binary: str, addresses: list[int]) -> list[tuple[str, int]]:
    out = subprocess.run(["addr2line", "-e", binary, *(f"{a:#x}" for a in addresses)],
                         capture_output=True, text=True, check=True).stdout
    places = []
    for line in out.splitlines():
        path, _, number = line.split(" (")[0].rpartition(":")
        places.append((path, int(number)))
    return places


def _check_hot_loop(obj: dict, binary: str) -> None:
    """The loop's line holds the function's samples; the cheap line next to nothing;
    every instruction's line is addr2line's; the range is nm's."""
    validate(obj, schema_of("annotate"))
    assert obj["function"] == "hot_loop" and obj["path"] == binary
    assert (obj["start"], obj["end"]) == _symbol(binary, "hot_loop")
    assert obj["value"] >= 20, obj            # ~2 s of a CPU at 499 Hz, however loaded
    top = obj["lines"][0]
    assert (top["file"], top["line"], top["source"]) == (str(WORKLOAD_SRC), HOT, HOT_TEXT)
    assert top["percent"] >= 80, obj["lines"]
    cheap = [r["percent"] for r in obj["lines"] if r["line"] == CHEAP]
    assert sum(cheap) <= 5, obj["lines"]
    assert sum(r["value"] for r in obj["lines"]) == obj["value"]
    insns = obj["instructions"]
    assert sum(r["value"] for r in insns) == obj["value"] or len(insns) == 20
    assert [r["value"] for r in insns] == sorted((r["value"] for r in insns), reverse=True)
    assert all(obj["start"] <= r["address"] < obj["end"] and r["instruction"] for r in insns)
    assert [(r["file"], r["line"]) for r in insns] == \
        _addr2line(binary, [r["address"] for r in insns])
    assert insns[0]["line"] == HOT
    assert obj["notes"] == [], obj["notes"]


@pytest.mark.root
def test_live_pid_at_O0(workload, tmp_path):
    """-p: profiles until the process exits (by itself), then annotates."""
    go = tmp_path / "go"
    proc = subprocess.Popen([workload, "--go-file", str(go), "hotloop", "2"],
                            stdout=subprocess.DEVNULL)
    running = None
    try:
        running = Tool("annotate", "hot_loop", "-p", str(proc.pid), "-F", "499",
                       "--json").start()
        go.touch()
        assert proc.wait(timeout=30) == 0
        gone = time.monotonic()
        out, err = running.wait(timeout=60)
        assert time.monotonic() - gone < 20, "annotate -p did not end with its process"
        assert running.returncode == 0, err
        objs = [json.loads(line) for line in out.splitlines()]
        assert len(objs) == 1, out
        _check_hot_loop(objs[0], workload)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if running is not None and running.proc.poll() is None:
            running.proc.kill()
            running.proc.communicate()


@pytest.mark.root
def test_recording_at_O2(workload_nofp, tmp_path):
    """From a recording: JSON, the text table, and a function with no samples."""
    rec = tmp_path / "hot.ptk"
    res = pytracekit("record", "-F", "499", "-o", str(rec), "--", workload_nofp,
                     "hotloop", "2")
    assert res.returncode == 0, res.stderr
    res = pytracekit("annotate", "-i", str(rec), "hot_loop", "--json")
    assert res.returncode == 0 and "note:" not in res.stderr, res.stderr   # (a loss line may be)
    obj = json.loads(res.stdout)
    _check_hot_loop(obj, workload_nofp)

    res = pytracekit("annotate", "-i", str(rec), "hot_loop")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == f"# hot_loop in {workload_nofp}, build id {obj['build_id']}"
    top = obj["lines"][0]
    assert lines[3] == " Percent  Samples  Line            Source"
    assert lines[4] == (f"{top['percent']:7.2f}% {top['value']:8d}  workload.c:{HOT}  "
                        f"{HOT_TEXT}")

    res = pytracekit("annotate", "-i", str(rec), "no_such_function")
    assert res.returncode == 1 and res.stdout == ""
    assert res.stderr.startswith("pytracekit annotate: error: no samples in a function "
                                 "named no_such_function; the hottest are: hot_loop"), res.stderr
    assert res.stderr.count("\n") == 1


# -- without root: a small program built here ----------------------------------

TINY = """\
volatile unsigned long sink;
void tiny(unsigned long n)
{
    sink += n;
    for (unsigned long k = 0; k < n; k++) sink += k;
}
int main(void) { tiny(10); return 0; }
"""


@pytest.fixture
def tiny(tmp_path) -> tuple[str, str]:
    """A binary with DWARF whose source is gone afterwards; its path and source's."""
    src, binary = tmp_path / "tiny.c", tmp_path / "tiny"
    src.write_text(TINY)
    subprocess.run(["gcc", "-O0", "-g", "-o", str(binary), str(src)], check=True)
    return str(binary), str(src)


def _profile(binary: str, leaf: tuple, build_id: str | None = None) -> StackProfile:
    from pytracekit.symbolize.elfsyms import load_image
    info = ModuleInfo(binary, build_id if build_id is not None else load_image(binary).build_id())
    frame = Frame("tiny", "user", "tiny", 0, leaf[0][0] if leaf else 0, info)
    root = Frame("main", "user", "tiny", 0, 0, info)
    value = sum(n for _, n in leaf) or 5
    return StackProfile([Sample((root, frame), value, 1, 1, "tiny", leaf)])


def test_leaf_addresses_survive_merging_and_recordings(tiny, tmp_path):
    binary, _ = tiny
    start, _end = _symbol(binary, "tiny")
    info = ModuleInfo(binary, "ab")
    raw = [Sample((Frame("tiny", "user", "tiny", 0x1000 + a, start + a, info),), n, 1, 1, "t")
           for a, n in ((4, 3), (8, 5), (4, 2))]
    merged = merge_by_name(StackProfile(raw))
    assert len(merged.samples) == 1
    assert merged.samples[0].value == 10
    assert merged.samples[0].leaf == ((start + 4, 5), (start + 8, 5))
    path = tmp_path / "r.ptk"
    recording.save(merged, str(path))
    assert recording.load(str(path)).samples[0].leaf == ((start + 4, 5), (start + 8, 5))
    doubled = StackProfile(merged.samples * 2).merged()
    assert doubled.samples[0].leaf == ((start + 4, 10), (start + 8, 10))


def test_missing_source_is_said_once(tiny):
    binary, src = tiny
    os.remove(src)
    start, end = _symbol(binary, "tiny")
    lines = _addr2line(binary, list(range(start, end)))
    loop = [a for a, (_, n) in zip(range(start, end), lines) if n == 5]
    ann = annotate(_profile(binary, ((loop[0], 7), (loop[-1], 3))), "tiny")
    assert ann.notes == [f"source {src} not found: its lines are shown without their text"]
    assert [(r.place.line, r.value, r.source) for r in ann.lines] == [(5, 10, None)]
    text = render.text(ann)
    assert f"tiny.c:5\n" in text      # no source text after it, nothing else said


def test_rebuilt_binary_and_old_recordings_are_refused(tiny):
    binary, _ = tiny
    start, _ = _symbol(binary, "tiny")
    with pytest.raises(NotFoundError, match=r"has changed since it was sampled \(build id "):
        annotate(_profile(binary, ((start, 1),), build_id="00" * 20), "tiny")
    with pytest.raises(NotFoundError, match="carry no instruction addresses.*record again"):
        annotate(_profile(binary, ()), "tiny")
    with pytest.raises(NotFoundError, match="no samples in a function named nope; the "
                                            "hottest are: tiny"):
        annotate(_profile(binary, ((start, 1),)), "nope")
    # (not on the workload: its main runs a few instructions of its own now and then)
    with pytest.raises(NotFoundError, match=r"^main has no samples of its own, only in "
                                            r"functions it calls \(1\); annotate one of those, "
                                            r"e.g. tiny$"):
        annotate(_profile(binary, ((start, 1),)), "main")


def test_a_large_files_function_is_disassembled_from_its_bytes(tiny, monkeypatch):
    """Past WHOLE_FILE_LIMIT objdump gets the function's bytes alone: the same
    instructions at the same addresses, without symbol names of targets."""
    from pytracekit.symbolize import disasm
    from pytracekit.symbolize.elfsyms import load_image
    binary, _ = tiny
    start, end = _symbol(binary, "tiny")
    whole = disasm.disassemble(binary, start, end)
    monkeypatch.setattr(disasm, "WHOLE_FILE_LIMIT", 0)
    alone = disasm.disassemble(binary, start, end,
                               load_image(binary).read_vaddr(start, end - start))
    assert sorted(alone) == sorted(whole) and len(whole) > 5
    assert [alone[a].split()[0] for a in sorted(alone)] == \
        [whole[a].split()[0] for a in sorted(whole)]


def test_the_file_with_most_samples_unless_module_says(tiny, tmp_path):
    binary, _ = tiny
    copy = str(tmp_path / "copy-of-tiny")
    shutil.copy(binary, copy)
    start, _ = _symbol(binary, "tiny")
    both = StackProfile(_profile(binary, ((start, 3),)).samples
                        + _profile(copy, ((start, 5),)).samples)
    ann = annotate(both, "tiny")
    assert (ann.module.path, ann.value, ann.total) == (copy, 5, 8)
    assert ann.notes == [f"tiny is also in {binary} (3 samples): annotating {copy} "
                         "(choose with --module)"]
    ann = annotate(both, "tiny", module="tiny")       # a base name or a path
    assert (ann.module.path, ann.value, ann.notes) == (binary, 3, [])


def test_a_fifo_or_relative_source_path_is_not_read(tmp_path):
    """A FIFO planted where the line table points must not block the run; a
    relative path is never looked up from our working directory."""
    from pytracekit.symbolize.srclines import read_source
    fifo = tmp_path / "planted.c"
    os.mkfifo(fifo)
    assert read_source(str(fifo)) is None
    (tmp_path / "x.c").write_text("one\ntwo\x0cthree\n")
    assert read_source(str(tmp_path / "x.c")) == ["one", "two\x0cthree", ""]
    assert read_source("x.c") is None
