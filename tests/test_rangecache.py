"""Function ranges kept on disk (pytracekit/symbolize/rangecache.py): the same
names as read from the file, and never another file's (a stripped copy has the
build id of the unstripped one; a debug file installed later names more)."""
from __future__ import annotations

import os
import subprocess

import pytest

from pytracekit.symbolize import elfsyms, rangecache
from pytracekit.symbolize.elfsyms import ElfSymbols, _function_ranges


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTRACEKIT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "ranges"


def _names(path: str) -> tuple[list[str], list[str]]:
    syms = ElfSymbols.load(path)
    return syms.names, syms.sources


def test_packed_ranges_read_back_and_damage_is_refused():
    ranges = ([0x10, 0x40], [0x30, 0x48], ["main", "free@plt"], ["symtab", "plt"])
    assert rangecache.unpacked(rangecache.packed(ranges)) == tuple(map(list, ranges))
    assert rangecache.unpacked(rangecache.packed(([], [], [], [])))[:3] == ([], [], [])
    assert rangecache.unpacked(rangecache.packed(ranges)[:-1]) is None
    assert rangecache.unpacked(b"something else") is None


def test_cached_names_are_the_files_own(workload_nofp, cache):
    fresh = _function_ranges(workload_nofp, ElfSymbols.load(workload_nofp).image)
    first = _names(workload_nofp)
    assert [e.suffix for e in cache.iterdir()] == [".ranges"]
    assert _names(workload_nofp) == first == (fresh[2], fresh[3])
    assert "spin_outer" in first[0]


def test_a_stripped_copy_with_the_same_build_id_is_not_named_from_the_unstripped(
        workload_nofp, cache, tmp_path):
    full = _names(workload_nofp)[0]
    stripped = tmp_path / "stripped"
    subprocess.run(["strip", "--strip-all", "-o", str(stripped), workload_nofp], check=True)
    image = ElfSymbols.load(str(stripped)).image
    assert image.build_id() == ElfSymbols.load(workload_nofp).image.build_id()
    names = _names(str(stripped))[0]
    assert "spin_outer" in full and "spin_outer" not in names
    assert len(list(cache.iterdir())) == 2


def test_a_debug_file_installed_later_is_read(workload_nofp, cache, tmp_path, monkeypatch):
    stripped = tmp_path / "stripped"
    subprocess.run(["strip", "--strip-all", "-o", str(stripped), workload_nofp], check=True)
    assert "spin_outer" not in _names(str(stripped))[0]
    build_id = ElfSymbols.load(str(stripped)).image.build_id()
    debug = tmp_path / "debug" / ".build-id" / build_id[:2] / f"{build_id[2:]}.debug"
    debug.parent.mkdir(parents=True)
    subprocess.run(["objcopy", "--only-keep-debug", workload_nofp, str(debug)], check=True)
    monkeypatch.setattr(elfsyms, "DEBUG_ROOT", tmp_path / "debug")
    names, sources = _names(str(stripped))
    assert "spin_outer" in names and sources[0] == f"debug file {debug}"


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_an_entry_someone_else_could_have_written_is_not_read(workload_nofp, cache):
    first = _names(workload_nofp)
    (entry,) = cache.iterdir()
    entry.write_bytes(rangecache.packed(([0x10], [0x20], ["planted"], ["symtab"])))
    os.chown(entry, 65534, 65534)
    assert _names(workload_nofp) == first
    assert entry.stat().st_uid == 0   # written again, root's


def test_the_cache_is_bounded(workload_nofp, cache, monkeypatch):
    monkeypatch.setattr(rangecache, "ENTRIES_KEPT", 3)
    cache.mkdir(parents=True)
    for i in range(5):
        (cache / f"{i:040x}.ranges").write_bytes(b"old")
        os.utime(cache / f"{i:040x}.ranges", ns=(i * 10**9, i * 10**9))
    _names(workload_nofp)
    left = sorted(e.name for e in cache.iterdir())
    assert len(left) == 3 and f"{4:040x}.ranges" in left and f"{0:040x}.ranges" not in left
