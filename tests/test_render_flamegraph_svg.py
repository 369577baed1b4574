"""The static SVG flame graph: parsed back as XML, and drawn by Chromium."""
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections import Counter

from pytracekit.model import StackProfile
from pytracekit.render.flametree import frame_fill
from pytracekit.render.flamegraph_svg import flamegraph_svg
from pytracekit.render.folded import folded

from conftest import ROOT
from headless import Browser
from stack_samples import spin_profile

NS = {"svg": "http://www.w3.org/2000/svg"}


def frames(svg: str) -> dict[str, dict]:
    """name -> the frame's tooltip and rectangle attributes."""
    out = {}
    for g in ET.fromstring(svg).iterfind("svg:g", NS):
        tip = g.find("svg:title", NS).text
        out[tip.split(" (", 1)[0]] = {"tip": tip, **g.find("svg:rect", NS).attrib}
    return out


def test_svg_parses_back_with_sizes_colours_and_tooltips():
    svg = flamegraph_svg(spin_profile(other=70), title="CPU <spin>", width=1090)
    drawn = frames(svg)
    assert float(drawn["all"]["width"]) == 1070 - 1      # 1090 minus margins: 1 px per sample
    inner = drawn["spin_inner"]
    assert (float(inner["x"]), float(inner["width"])) == (10 + 70, 970 - 1)
    assert inner["fill"] == frame_fill("spin_inner", "user")
    assert inner["tip"] == "spin_inner (970 samples, 90.65%; self 950)"
    assert float(drawn["all"]["y"]) - float(inner["y"]) == 6 * 16
    assert "CPU &lt;spin&gt;" in svg and "<script" not in svg


def test_icicle_and_unit_names():
    off_cpu = StackProfile(spin_profile().samples, value_type="off_cpu", unit="microseconds")
    drawn = frames(flamegraph_svg(off_cpu, icicle=True, count_name=None))
    assert float(drawn["all"]["y"]) < float(drawn["spin_inner"]["y"])
    assert drawn["main"]["tip"] == "main (1,000 us, 100.00%; self 0)"


def test_empty_profile_is_still_an_image():
    root = ET.fromstring(flamegraph_svg(StackProfile()))
    assert "No stacks were recorded." in [t.text for t in root.iterfind("svg:text", NS)]


def test_the_command_line_writes_svg(tmp_path):
    res = subprocess.run([sys.executable, "-m", "pytracekit.render.flamegraph", "--svg"],
                         input=folded(spin_profile()), capture_output=True, text=True,
                         cwd=ROOT, timeout=60)
    assert res.returncode == 0, res.stderr
    assert frames(res.stdout)["spin_inner"]["tip"].startswith("spin_inner (970 samples")


def test_chromium_draws_the_svg(tmp_path):
    path = tmp_path / "spin.svg"
    path.write_text(flamegraph_svg(spin_profile(other=70), width=1090))
    inner = frames(path.read_text())["spin_inner"]
    with Browser(width=1100, height=400) as browser:
        browser.open(path.as_uri())
        image = browser.screenshot()
    x, y = int(float(inner["x"])), int(float(inner["y"]))
    colours = Counter(image.region_colours(x + 2, y + 2, x + 900, y + 13))
    assert colours.most_common(1)[0][0] == tuple(
        int(v) for v in inner["fill"][4:-1].split(","))
