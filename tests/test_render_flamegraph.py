"""Flame graphs: the layout and page data parsed back, then the page opened in
headless Chromium: frames drawn where the layout says in their colours, search,
zoom, tooltips, icicle and differential graphs."""
import re
import subprocess
import sys
from collections import Counter

import pytest

from pytracekit.model import Frame, Sample, StackProfile
from pytracekit.render.flamegraph import diff_flamegraph_html, flamegraph_html, page_data
from pytracekit.render.flametree import SEARCH_FILL, diff_fill, frame_fill, layout
from pytracekit.render.folded import folded, parse_folded

from conftest import ROOT, pytracekit
from headless import Browser, dump_dom
from stack_samples import spin_profile, user

SPIN_PATH = ["all", "workload", "_start", "__libc_start_main", "main", "spin_outer", "spin_inner"]


def rects_by_name(rects):
    return {r.name: r for r in rects}


def rgb(text: str) -> tuple:
    return tuple(int(v) for v in re.findall(r"\d+", text))


def test_layout_places_children_left_in_name_order_with_self_time_on_the_right():
    rects = layout(spin_profile(other=70))
    by = rects_by_name(rects)
    assert rects[0].name == "all" and (rects[0].start, rects[0].value) == (0, 1070)
    assert [by[n].depth for n in SPIN_PATH] == list(range(7))
    # swapper/0 sorts before workload ("s" < "w"): idle first, then the workload.
    assert (by["swapper/0"].start, by["swapper/0"].value) == (0, 70)
    assert (by["workload"].start, by["workload"].value) == (70, 1000)
    assert (by["spin_outer"].start, by["spin_outer"].value, by["spin_outer"].self_value) == (
        70, 1000, 30)
    assert (by["spin_inner"].start, by["spin_inner"].value, by["spin_inner"].self_value) == (
        70, 970, 950)
    assert (by["--"].start, by["--"].depth, by["sysvec_apic_timer_interrupt"].depth) == (70, 7, 9)
    # Parents come before their children, and every child fits inside its parent.
    seen = set()
    for r in rects:
        seen.add((r.depth, r.start))
    assert len(seen) == len(rects)


def test_colours_tell_kinds_apart_and_stay_stable_per_name():
    by = rects_by_name(layout(spin_profile(other=70)))
    r, g, b = rgb(by["spin_inner"].fill)
    assert r > 200 and b < 80, "user frames are warm"
    r, g, b = rgb(by["do_idle"].fill)
    assert b > 190 and r < 90, "kernel frames are aqua"
    assert rgb(by["workload"].fill)[2] > 220, "process frames are violet"
    assert by["--"].fill == "rgb(200,200,200)"
    assert frame_fill("spin_inner", "user") == by["spin_inner"].fill
    assert frame_fill("spin_inner", "kernel") != by["spin_inner"].fill


def test_python_frames_are_lime_apart_from_every_native_kind():
    profile = StackProfile([Sample((Frame("python3", "process"), Frame("main (app.py:3)", "python"),
                                    Frame("PyObject_Free")), 5)])
    by = rects_by_name(layout(profile))
    r, g, b = rgb(by["main (app.py:3)"].fill)
    assert g > 190 and b < 100 and r < 190, "python frames are lime"
    for name in ("spin_inner", "handler (app.py:14)", "x"):
        fills = {frame_fill(name, kind) for kind in ("user", "kernel", "jit", "process", "python")}
        assert len(fills) == 5


def test_tiny_frames_are_left_out_but_still_counted_in_their_parents():
    profile = spin_profile()
    profile.samples.append(Sample((Frame("workload", "process"), Frame("rare")), 1))
    by = rects_by_name(layout(profile, min_fraction=0.01))
    assert "rare" not in by and by["workload"].value == 1001
    assert "rare" in rects_by_name(layout(profile))


def test_page_embeds_the_layout_and_loads_nothing_from_the_network():
    page = flamegraph_html(spin_profile(other=70), title="CPU <profile>", count_name="samples")
    data = page_data(page)
    assert data["total"] == 1070 and data["count_name"] == "samples" and not data["icicle"]
    frames = [dict(zip(data["fields"], row)) for row in data["frames"]]
    names = {data["names"][f["name"]]: f for f in frames}
    assert names["spin_inner"]["value"] == 970 and names["spin_inner"]["self"] == 950
    assert names["spin_inner"]["fill"] == frame_fill("spin_inner", "user")
    assert sum(f["self"] for f in frames) == 1070
    assert "<title>CPU &lt;profile&gt;</title>" in page
    assert not re.search(r"""(src|href)\s*=|@import|url\(|fetch\(|XMLHttpRequest""", page)
    assert re.findall(r"https?://[^\s\"']+", page) == ["http://www.w3.org/2000/svg"]


def test_count_name_none_names_values_after_the_profile_unit():
    off_cpu = StackProfile(spin_profile().samples, value_type="off_cpu", unit="microseconds")
    data = page_data(flamegraph_html(off_cpu, count_name=None))
    assert data["count_name"] == "us" and data["subtitle"] == "1,000 us in 3 stacks"
    assert page_data(flamegraph_html(spin_profile(), count_name=None))["count_name"] == "samples"
    calls = StackProfile(spin_profile().samples, value_type="calls", unit="count")
    assert page_data(diff_flamegraph_html(calls, calls, count_name=None))["count_name"] == "calls"


def test_names_cannot_break_out_of_the_embedded_json():
    evil = "</script><script>alert(1)</script>"
    page = flamegraph_html(StackProfile([Sample((Frame(evil),), 3)]))
    assert page.count("</script>") == 2
    assert evil in page_data(page)["names"]


def diff_profiles():
    base = (Frame("app", "process"),) + user("main")
    before = StackProfile([Sample(base + user("parse"), 500), Sample(base + user("render"), 500)])
    # Twice the samples overall; parse's share grows from 50% to 90%.
    after = StackProfile([Sample(base + user("parse"), 1800), Sample(base + user("render"), 200)])
    return before, after


def test_differential_colours_growth_red_and_shrinkage_blue_after_normalizing():
    before, after = diff_profiles()
    data = page_data(diff_flamegraph_html(before, after))
    frames = {data["names"][row[0]]: dict(zip(data["fields"], row)) for row in data["frames"]}
    assert data["diff"] and data["total"] == 2000
    # before is scaled to after's total (x2): parse 1000 -> 1800, render 1000 -> 200.
    assert (frames["parse"]["before"], frames["render"]["before"]) == (1000.0, 1000.0)
    assert frames["parse"]["fill"] == diff_fill(800, 800) == "rgb(255,25,25)"
    assert frames["render"]["fill"] == "rgb(25,25,255)"
    assert frames["main"]["fill"] == frames["app"]["fill"] == "rgb(235,235,235)"
    # Same shares in both profiles: nothing changed once totals are normalized.
    same = page_data(diff_flamegraph_html(before, StackProfile(
        [Sample(s.stack, s.value * 3) for s in before.samples])))
    assert {row[6] for row in same["frames"]} == {"rgb(235,235,235)"}


def test_differential_shades_by_magnitude_and_negate_lays_out_before():
    before, after = diff_profiles()
    after.samples.append(Sample((Frame("app", "process"),) + user("main", "log"), 100))
    data = page_data(diff_flamegraph_html(before, after))
    fills = {data["names"][row[0]]: rgb(row[6]) for row in data["frames"]}
    assert fills["log"][0] == 255 and fills["log"][1] > fills["parse"][1], "smaller growth, paler"
    negated = page_data(diff_flamegraph_html(before, after, negate=True))
    names = {negated["names"][row[0]] for row in negated["frames"]}
    assert "log" not in names and negated["total"] == 1000 and negated["negate"]
    fills = {negated["names"][row[0]]: rgb(row[6]) for row in negated["frames"]}
    assert fills["parse"][0] == 255 and fills["render"][2] == 255


def test_the_command_line_converts_folded_stacks(tmp_path):
    source = tmp_path / "spin.folded"
    source.write_text(folded(spin_profile()))
    res = subprocess.run([sys.executable, "-m", "pytracekit.render.flamegraph", "--icicle",
                          "--title", "spin"], input=source.read_text(), capture_output=True,
                         text=True, cwd=ROOT, timeout=60)
    assert res.returncode == 0, res.stderr
    data = page_data(res.stdout)
    assert data["icicle"] and data["total"] == 1000 and data["title"] == "spin"
    other = tmp_path / "after.folded"
    other.write_text(folded(spin_profile(inner=100)))
    out = tmp_path / "diff.html"
    res = subprocess.run([sys.executable, "-m", "pytracekit.render.flamegraph", "--diff",
                          str(source), str(other), "-o", str(out)], capture_output=True,
                         text=True, cwd=ROOT, timeout=60)
    assert res.returncode == 0 and res.stdout == "", res.stderr
    assert page_data(out.read_text())["diff"]


@pytest.mark.parametrize("stdin, args, status, message", [
    ("main;spin 12\nmain;broken\n", [], 2, "flamegraph: error: folded stacks line 2: expected"),
    ("", ["/nonexistent.folded"], 1, "flamegraph: error: cannot read /nonexistent.folded: "),
])
def test_command_line_errors_are_one_line(stdin, args, status, message):
    res = subprocess.run([sys.executable, "-m", "pytracekit.render.flamegraph", *args],
                         input=stdin, capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert res.returncode == status
    assert res.stderr.startswith(message) and res.stderr.count("\n") == 1


# --- in the browser ---------------------------------------------------------------------

def dominant_colour(image, box) -> tuple:
    """The commonest colour inside a frame's box (its label text covers a little)."""
    x0, y0 = int(box["x"]) + 2, int(box["y"]) + 2
    x1, y1 = int(box["x"] + box["width"]) - 2, int(box["y"] + box["height"]) - 2
    return Counter(image.region_colours(x0, y0, x1, y1)).most_common(1)[0][0]


@pytest.fixture
def spin_page(tmp_path):
    path = tmp_path / "spin.html"
    path.write_text(flamegraph_html(spin_profile(other=70)))
    return path


def test_chromium_draws_the_spinning_function_where_the_layout_puts_it(spin_page):
    by = rects_by_name(layout(spin_profile(other=70)))
    with Browser() as browser:
        browser.open(spin_page.as_uri())
        chart = browser.box("#flamegraph")
        root, inner = browser.box('g[data-name="all"] rect'), \
            browser.box('g[data-name="spin_inner"] rect')
        image = browser.screenshot()
    width = chart["width"]
    assert root["width"] == pytest.approx(width - 1, abs=0.01)
    assert inner["x"] - chart["x"] == pytest.approx(by["spin_inner"].start / 1070 * width,
                                                    abs=0.01)
    assert inner["width"] == pytest.approx(970 / 1070 * width - 1, abs=0.01)
    # Flame graph: the root at the bottom, spin_inner six rows above it.
    assert root["y"] - inner["y"] == 6 * 16
    assert dominant_colour(image, inner) == rgb(by["spin_inner"].fill)
    kernel_box = {"x": inner["x"], "y": inner["y"] - 3 * 16, "width": 20 / 1070 * width,
                  "height": 15}
    assert dominant_colour(image, kernel_box) == rgb(by["sysvec_apic_timer_interrupt"].fill)


def test_search_from_the_url_highlights_the_frame_and_reports_the_share(spin_page):
    dom = dump_dom(spin_page.as_uri() + "#search=spin_inner")
    assert re.findall(r'<g class="frame match" data-i="\d+" data-name="([^"]+)"', dom) == [
        "spin_inner"]
    assert '<span id="matched">Matched: 90.65% (970 samples)</span>' in dom
    with Browser() as browser:
        browser.open(spin_page.as_uri() + "?search=s+pin_")   # a regexp; nested matches once
        assert browser.evaluate("document.getElementById('matched').textContent") == \
            "Matched: 93.46% (1,000 samples)"
        assert dominant_colour(browser.screenshot(),
                               browser.box('g[data-name="spin_inner"] rect')) == rgb(SEARCH_FILL)
        browser.evaluate("const s = document.getElementById('search'); s.value = 'idle';"
                         "s.dispatchEvent(new Event('input'))")
        assert browser.evaluate("[...document.querySelectorAll('g.match')].map("
                                "g => g.dataset.name).join(',')") == "do_idle,default_idle"


def test_click_zooms_into_a_frame_and_hover_shows_counts_and_percentages(spin_page):
    with Browser() as browser:
        browser.open(spin_page.as_uri())
        width = browser.box("#flamegraph")["width"]
        outer = browser.box('g[data-name="spin_outer"] rect')
        browser.mouse("mouseMoved", outer["x"] + 300, outer["y"] + 8)
        tip = browser.evaluate("document.getElementById('tooltip').textContent")
        assert tip == ("spin_outer [user]\n1,000 samples (93.46% of all)\n"
                       "self: 30 samples (2.80%)")
        assert not browser.evaluate("document.getElementById('tooltip').hidden")
        browser.mouse("click", outer["x"] + 300, outer["y"] + 8)
        inner = browser.box('g[data-name="spin_inner"] rect')
        assert inner["width"] == pytest.approx(970 / 1000 * width - 1, abs=0.01)
        assert browser.evaluate("document.querySelector('g[data-name=\"swapper/0\"]')") is None
        assert browser.evaluate("document.querySelector('g[data-name=\"all\"]')"
                                ".getAttribute('class')") == "frame ancestor"
        browser.mouse("mouseMoved", inner["x"] + 300, inner["y"] + 8)
        assert "(90.65% of all, 97.00% of spin_outer)" in browser.evaluate(
            "document.getElementById('tooltip').textContent")
        browser.evaluate("document.getElementById('reset').click()")
        assert browser.evaluate("document.querySelector('g[data-name=\"swapper/0\"]')") \
            is not None


def test_an_empty_profile_says_so(tmp_path):
    path = tmp_path / "empty.html"
    path.write_text(flamegraph_html(StackProfile()))
    assert page_data(path.read_text())["total"] == 0
    with Browser() as browser:
        browser.open(path.as_uri() + "#search=x")
        assert browser.evaluate("document.getElementById('chart').textContent") == \
            "No stacks were recorded."
        assert browser.evaluate("document.getElementById('matched').textContent") == \
            "Matched: 0% (0 samples)"


def test_icicle_puts_the_root_on_top(tmp_path):
    path = tmp_path / "icicle.html"
    path.write_text(flamegraph_html(spin_profile(), icicle=True))
    with Browser() as browser:
        browser.open(path.as_uri())
        chart, root = browser.box("#flamegraph"), browser.box('g[data-name="all"] rect')
        inner = browser.box('g[data-name="spin_inner"] rect')
    assert root["y"] == chart["y"] and inner["y"] - root["y"] == 6 * 16


def test_differential_graph_draws_growth_red_and_shrinkage_blue(tmp_path):
    before, after = diff_profiles()
    path = tmp_path / "diff.html"
    path.write_text(diff_flamegraph_html(before, after))
    with Browser() as browser:
        browser.open(path.as_uri())
        image = browser.screenshot()
        parse, render = browser.box('g[data-name="parse"] rect'), \
            browser.box('g[data-name="render"] rect')
        assert dominant_colour(image, parse) == (255, 25, 25)
        assert dominant_colour(image, render) == (25, 25, 255)
        label_classes = browser.evaluate(
            "Object.fromEntries([...document.querySelectorAll('g.frame')].map("
            "g => [g.dataset.name, g.querySelector('text').getAttribute('class')]))")
        assert label_classes == {"all": None, "app": None, "main": None, "parse": "light",
                                 "render": "light"}, "white labels on deep colours"
        browser.mouse("mouseMoved", parse["x"] + 100, parse["y"] + 8)
        assert browser.evaluate("document.getElementById('tooltip').textContent") == (
            "parse [user]\nafter: 1,800 samples (90.00%)\nbefore (normalized): 1,000 (50.00%)"
            "\nchange: +800 (+40.00% of the total)")


@pytest.mark.root
def test_a_real_profile_of_the_spinning_workload_shows_and_finds_spin_inner(tmp_path, workload):
    res = pytracekit("profile", "-F", "199", "-a", "-f", "--", workload, "spin", "1")
    assert res.returncode == 0, res.stderr
    profile = parse_folded(res.stdout)
    path = tmp_path / "profile.html"
    path.write_text(flamegraph_html(profile, title="workload spin"))
    with Browser() as browser:
        browser.open(path.as_uri() + "#search=^spin_inner$")
        inner = browser.box('g[data-name="spin_inner"] rect')
        assert inner["width"] > 0.9 * browser.box("#flamegraph")["width"]
        assert dominant_colour(browser.screenshot(), inner) == rgb(SEARCH_FILL)
        share = browser.evaluate("document.getElementById('matched').textContent")
    assert float(re.match(r"Matched: ([\d.]+)%", share).group(1)) >= 90, share
