"""mapdrain: a map read whole by batch lookup, and drained (each entry deleted
as it is read), on real BPF maps."""
import pytest

from pytracekit.engine.loader import Program
from pytracekit.collect.mapdrain import DrainedTable, drain, snapshot

SOURCE = """#include "vmlinux.h"
#include "pytracekit.h"
BPF_HASH(numbers, u32, u64, 100000);
struct pair { u32 a; u32 b; };
BPF_HASH(pairs, struct pair, u64, 100);
BPF_ARRAY(slots, u64, 4);
"""


@pytest.fixture(scope="module")
def maps():
    prog = Program.from_text("mapdrain_test", SOURCE)
    prog.compile()
    yield prog
    prog.close()


@pytest.mark.root
def test_snapshot_reads_every_entry_in_chunks(maps):
    numbers = maps["numbers"]
    for i in range(5000):          # several 1024-entry batches
        numbers[numbers.Key(i)] = numbers.Leaf(3 * i)
    entries = snapshot(numbers)
    assert sorted((k.value, v.value) for k, v in entries) == [(i, 3 * i) for i in range(5000)]
    assert all(isinstance(k, numbers.Key) for k, _ in entries)   # BCC's types, not ints
    assert len(snapshot(numbers, chunk=7)) == 5000


@pytest.mark.root
def test_drain_empties_what_it_returns(maps):
    pairs = maps["pairs"]
    for i in range(9):
        pairs[pairs.Key(i, i + 1)] = pairs.Leaf(i)
    drained = DrainedTable(pairs)
    assert sorted((k.a, k.b, v.value) for k, v in drained.items()) == \
        [(i, i + 1, i) for i in range(9)]
    assert drained[pairs.Key(4, 5)].value == 4
    assert list(pairs.items()) == []
    assert drain(pairs) == []


@pytest.mark.root
def test_arrays_are_read_by_bccs_walk(maps):
    slots = maps["slots"]
    slots[slots.Key(2)] = slots.Leaf(7)
    assert [(k.value, v.value) for k, v in snapshot(slots)] == [(0, 0), (1, 0), (2, 7), (3, 0)]


@pytest.mark.root
def test_drained_reads_hashes_drained_and_zeroes_arrays_after(maps):
    from pytracekit.collect.mapdrain import drained
    numbers, slots = maps["numbers"], maps["slots"]
    numbers.clear()
    numbers[numbers.Key(1)] = numbers.Leaf(10)
    slots[slots.Key(1)] = slots.Leaf(5)
    with drained(maps, ["numbers", "slots"]):
        assert [(k.value, v.value) for k, v in maps["numbers"].items()] == [(1, 10)]
        assert maps["slots"][maps["slots"].Key(1)].value == 5   # read as it is
        assert list(numbers.items()) == []                       # already empty
    assert [v.value for v in slots.values()] == [0, 0, 0, 0]
