"""timechart: the model built from per-run records, the SVG drawn from it
(parsed back with xml.etree), and real runs: the workload's sleeps and spins
as the task's spans, a loop disk's direct writes as its requests."""
import xml.etree.ElementTree as ET

import pytest

from block_fixture import loop_disk  # noqa: F401 (fixture)
from conftest import pytracekit
from snoop_helpers import validated_json

from pytracekit.render import timeline
from pytracekit.render.timechart_svg import LABEL, MARGIN, WIDTH, timechart_svg
from pytracekit.collect.schedtimes import BlockEvent, Switch

NS = {"s": "http://www.w3.org/2000/svg"}
MS = 1_000_000


def rows(svg: bytes) -> dict[str, list[tuple[str, float, float, str]]]:
    """data-name -> (state, x, width, tooltip) of each span."""
    root = ET.fromstring(svg)
    return {g.get("data-name"): [(r.get("class").split()[1], float(r.get("x")),
                                  float(r.get("width")), r.find("s:title", NS).text)
                                 for r in g.iterfind("s:rect", NS)]
            for g in root.iterfind("s:g", NS)}


def test_model_and_svg_from_known_records():
    t0 = 1000 * MS
    records = [
        # ran 0-10 ms on CPU 1, then slept (S) 10-40, runnable 40-45, ran 45-60, then D
        Switch(t0 + 10 * MS, 1, 7, 7, "app", 0, 0, 10 * MS, None, "S"),
        Switch(t0 + 60 * MS, 1, 7, 7, "app", 35 * MS, 5 * MS, 15 * MS, "S", "D"),
        BlockEvent(t0 + 62 * MS, False, 0x800001, 8, 4096),
        BlockEvent(t0 + 70 * MS, True, 0x800001, 8, 4096),
        Switch(t0 + 90 * MS, 0, 8, 9, "worker", 0, 0, 20 * MS, None, "X"),
    ]
    chart = timeline.build(records, t0, t0 + 100 * MS, lambda dev: f"disk{dev & 0xff}")
    app = chart.tasks[0]
    assert app.name == "app[7]" and chart.tasks[1].name == "worker[9/8]"
    assert [(s.kind, s.start_ns - t0, s.end_ns - t0) for s in app.spans] == [
        ("running", 0, 10 * MS), ("sleeping", 10 * MS, 40 * MS), ("runnable", 40 * MS, 45 * MS),
        ("running", 45 * MS, 60 * MS), ("io", 60 * MS, 100 * MS)]   # left blocked (D)
    assert chart.totals(app)["running"] == 25 * MS
    assert [r.name for r in chart.cpus] == ["CPU 0", "CPU 1"]
    assert [(r.name, [(s.start_ns - t0, s.end_ns - t0) for s in r.spans]) for r in chart.disks] \
        == [("disk1", [(62 * MS, 70 * MS)])]

    svg = timechart_svg(chart, title="a <chart>")
    root = ET.fromstring(svg)
    assert root.find("s:text", NS).text == "a <chart>"
    drawn = rows(svg)
    assert list(drawn) == ["CPU 0", "CPU 1", "disk1", "app[7]", "worker[9/8]"]
    scale = (WIDTH - LABEL - 2 * MARGIN) / (100 * MS)
    x0 = LABEL + MARGIN
    assert [(s, round(x - x0, 2), round(w, 2)) for s, x, w, _ in drawn["app[7]"]] == [
        (state, round(a * MS * scale, 2), round((b - a) * MS * scale, 2)) for state, a, b in
        [("running", 0, 10), ("sleeping", 10, 40), ("runnable", 40, 45), ("running", 45, 60),
         ("io", 60, 100)]]
    assert [tip for *_, tip in drawn["CPU 1"]] == ["app[7] 10.000 ms", "app[7] 15.000 ms"]
    assert drawn["disk1"][0][3] == "io 8.000 ms (sector 8, 4096 bytes)"
    assert drawn["worker[9/8]"][0][3] == "running 20.000 ms (cpu 0)"


@pytest.mark.root
def test_sleeps_and_spins_drawn(workload, tmp_path):
    out = tmp_path / "chart.svg"
    n, sleep_ms, spin_ms = 3, 40, 20
    res = pytracekit("timechart", "-o", str(out), "--json", "--", workload, "sleepspin", str(n),
                     str(sleep_ms), str(spin_ms))
    assert res.returncode == 0, res.stderr
    written, loss = validated_json("timechart", res.stdout)
    assert written["path"] == str(out) and written["tasks"] == 1
    assert loss["lost_events"] == 0
    assert f"seconds of trace to {out}." in res.stderr
    drawn = rows(out.read_bytes())
    [(name, spans)] = [(k, v) for k, v in drawn.items() if k.startswith("workload[")]
    sleeps = [float(tip.split()[1]) for state, _, _, tip in spans if state == "sleeping"]
    assert len(sleeps) == n and all(abs(ms - sleep_ms) <= sleep_ms / 10 for ms in sleeps), spans
    running = sum(float(tip.split()[1]) for state, _, _, tip in spans if state == "running")
    assert abs(running - n * spin_ms) <= n * spin_ms / 10 + 2, spans   # + start-up and exit
    cpu_runs = [tip for k, v in drawn.items() if k.startswith("CPU ") for *_, tip in v]
    assert len(cpu_runs) == sum(1 for s in spans if s[0] == "running")
    assert all(tip.startswith(f"{name} ") for tip in cpu_runs)


@pytest.mark.root
def test_direct_writes_are_the_disks_requests(loop_disk, tmp_path):
    out = tmp_path / "io.svg"
    res = pytracekit("timechart", "-o", str(out), "--", loop_disk.dd, "if=/dev/zero",
                     f"of={loop_disk.path}", "oflag=direct", "bs=65536", "count=4")
    assert res.returncode == 0, res.stderr
    drawn = rows(out.read_bytes())
    assert [tip.split(", ")[1] for *_, tip in drawn[loop_disk.name]] == ["65536 bytes)"] * 4
    [dd] = [v for k, v in drawn.items() if k.startswith(loop_disk.comm + "[")]
    assert sum(1 for state, *_ in dd if state == "io") >= 4     # blocked on each write
