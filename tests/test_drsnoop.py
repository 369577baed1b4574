"""drsnoop against dd writing 64 MiB in a memory cgroup limited to 16 MiB
(never the host's memory): the cgroup must reclaim at least the 48 MiB over
its limit, and every reclaim is one event, as perf counts them in the same run."""
import os
import sys

import pytest

from conftest import ROOT
from memcg_helpers import memory_cgroup
from snoop_helpers import perf_stat, summary, validated_json

LIMIT, WRITTEN = 16 << 20, 64 << 20
BEGIN = "vmscan:mm_vmscan_memcg_reclaim_begin"


def _dd(path) -> list[str]:
    return ["dd", "if=/dev/zero", f"of={path}", "bs=1M", f"count={WRITTEN >> 20}",
            "status=none"]


@pytest.mark.root
def test_each_reclaim_once_with_its_pages(tmp_path):
    out = tmp_path / "out.json"
    with memory_cgroup(LIMIT) as inside:
        # perf counts the tool and its command: only the command reclaims
        perf = perf_stat([BEGIN], ["sh", "-c", f'cd {ROOT} && exec "$@" > {out}', "sh",
                                   sys.executable, "-m", "pytracekit", "drsnoop", "--json",
                                   "--", *inside, *_dd(tmp_path / "file")])
    objects = validated_json("drsnoop", out.read_text())
    events = [o for o in objects if o["type"] == "event"]
    assert len(events) == perf[BEGIN] > 0
    assert {(e["comm"], e["kind"], e["uid"]) for e in events} == {("dd", "memcg", 0)}
    # usage never passes the limit: all but the limit (less per-CPU charge
    # batches of 64 pages) was freed by these reclaims
    assert sum(e["pages"] for e in events) >= (WRITTEN - LIMIT) // 4096 - 64 * os.cpu_count()
    assert objects[-1]["type"] == "loss" and objects[-1]["captured"] == len(events)


@pytest.mark.root
def test_text_columns_and_filters(tmp_path):
    from conftest import pytracekit
    with memory_cgroup(LIMIT) as inside:
        res = pytracekit("drsnoop", "-T", "-U", "--", *inside, *_dd(tmp_path / "a"))
        other = pytracekit("drsnoop", "-u", "65534", "--", *inside, *_dd(tmp_path / "b"))
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].split() == ["TIME(s)", "UID", "COMM", "PID", "LAT(ms)", "PAGES", "TYPE"]
    rows = [line.split() for line in lines[1:]]
    assert rows and {(r[1], r[2], r[6]) for r in rows} == {("0", "dd", "memcg")}
    assert len({r[3] for r in rows}) == 1
    assert summary(res.stderr)["captured"] == len(rows)
    assert other.stdout.splitlines()[1:] == [] and summary(other.stderr)["captured"] == 0


@pytest.mark.root
def test_verbose_order_and_gfp_flags_as_perf_records_them(tmp_path):
    """-v: each reclaim's allocation order and GFP flags, named as ftrace
    names them; perf records the begin tracepoint of the same reclaims."""
    import re
    import subprocess
    out, data = tmp_path / "out.txt", tmp_path / "perf.data"
    with memory_cgroup(LIMIT) as inside:
        run = subprocess.run(["perf", "record", "-q", "-o", str(data), "-e", BEGIN, "--",
                              "sh", "-c", f'cd {ROOT} && exec "$@" > {out}', "sh",
                              sys.executable, "-m", "pytracekit", "drsnoop", "-v", "--",
                              *inside, *_dd(tmp_path / "file")],
                             capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    script = subprocess.run(["perf", "script", "-i", str(data), "-F", "comm,trace"],
                            capture_output=True, text=True, timeout=120).stdout
    want = [m.groups() for m in re.finditer(r"^\s*dd\s+order=(-?\d+) gfp_flags=(\S+)", script,
                                            re.M)]
    lines = out.read_text().splitlines()
    assert lines[0].split() == ["COMM", "PID", "LAT(ms)", "PAGES", "TYPE", "ORDER", "GFP"]
    rows = [line.split() for line in lines[1:]]
    assert want and [(r[5], r[6]) for r in rows] == want
    assert {r[4] for r in rows} == {"memcg"}


def test_gfp_flags_named_as_ftrace_names_them():
    from pytracekit.kernel.tracefs import decode_flags, parse_format
    fmt = ('print fmt: "order=%d gfp_flags=%s", REC->order, (REC->gfp_flags) ? '
           '__print_flags(REC->gfp_flags, "|", {( unsigned long)((( gfp_t)((((1UL))) << (6)))'
           ' | (( gfp_t)((((1UL))) << (7)))), "GFP_NOFS_LIKE"}, {( unsigned long)(( gfp_t)'
           '((((1UL))) << (6))), "__GFP_IO"}, { 0, ((void *)0) } ) : "none"\n')
    table = parse_format("vmscan", "x", fmt).flag_names("gfp_flags")
    assert table == [(0xc0, "GFP_NOFS_LIKE"), (0x40, "__GFP_IO")]
    assert decode_flags(0xc0, table) == "GFP_NOFS_LIKE"
    assert decode_flags(0x41, table) == "__GFP_IO|0x1"
    assert decode_flags(0, table) == "none"
