"""Interactive flame graphs: one self-contained HTML file, no network access.

Python does the work that must be testable: it merges the stacks into a
tree, lays the frames out (`layout`) and colours them. The page embeds that
layout as JSON (`<script type="application/json" id="flamegraph-data">`) and
its inline script only scales, draws, zooms, searches and shows tooltips.

Colours: user frames warm (red to yellow), kernel frames aqua, JIT frames
green, process (comm) frames violet, markers grey. The differential graph
lays out the `after` profile and colours each frame by how its share of the
total changed: red grew, blue shrank, deeper for bigger changes.

Run `python -m pytracekit.render.flamegraph [FILE]` to turn folded stacks
(flamegraph.pl input) into a page, like flamegraph.pl (`--svg`: a static image,
see flamegraph_svg.py).
"""
from __future__ import annotations

import html
import json
import sys
from pathlib import Path

from ..model import StackProfile
from .flametree import (SEARCH_FILL, Node, Rect, build_tree, diff_fill, layout,
                        unit_label)

ASSETS = Path(__file__).with_name("assets")
# Frames narrower than this share of the total are left out of the page:
# invisible even at 100x zoom, and they would bloat big profiles.
MIN_FRACTION = 0.00005
# JSON field order of one frame in the page (arrays keep big profiles small).
FRAME_FIELDS = ["name", "kind", "depth", "start", "value", "self", "fill", "before"]


def _page(data: dict, title: str) -> str:
    """The HTML document: the layout as JSON plus the inline stylesheet and script."""
    css = (ASSETS / "flamegraph.css").read_text()
    script = (ASSETS / "flamegraph.js").read_text()
    # "</" inside the JSON would end the <script> element early.
    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    return (f"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html.escape(title)}</title>\n<style>\n{css}</style>\n</head>\n<body>\n"
            f"<div id=\"header\"><h1>{html.escape(title)}</h1>\n"
            "<div id=\"controls\"><button id=\"reset\" type=\"button\">Reset zoom</button>\n"
            "<input id=\"search\" type=\"search\" placeholder=\"Search (regexp)\" "
            "aria-label=\"Search\">\n<span id=\"matched\"></span></div>\n"
            "<div id=\"subtitle\"></div></div>\n"
            "<div id=\"chart\"></div>\n<div id=\"details\">&nbsp;</div>\n"
            "<div id=\"tooltip\" hidden></div>\n"
            f"<script type=\"application/json\" id=\"flamegraph-data\">{payload}</script>\n"
            f"<script>\n{script}</script>\n</body>\n</html>\n")


def _rect_rows(rects: list[Rect], names: dict[str, int]) -> list[list]:
    rows = []
    for r in rects:
        index = names.setdefault(r.name, len(names))
        rows.append([index, r.kind, r.depth, r.start, r.value, r.self_value, r.fill, r.before])
    return rows


def _data(rects: list[Rect], *, title: str, count_name: str, icicle: bool,
          subtitle: str = "", diff: bool = False, negate: bool = False, unit: str = "") -> dict:
    names: dict[str, int] = {}
    frames = _rect_rows(rects, names)
    return {"title": title, "subtitle": subtitle, "count_name": count_name, "unit": unit,
            "icicle": icicle, "diff": diff, "negate": negate, "total": rects[0].value,
            "search_fill": SEARCH_FILL, "fields": FRAME_FIELDS,
            "names": list(names), "frames": frames}


def flamegraph_html(profile: StackProfile, *, title: str = "Flame Graph", icicle: bool = False,
                    count_name: str | None = "samples",
                    min_fraction: float = MIN_FRACTION) -> str:
    """The profile as one interactive HTML page (root at the bottom; at the top
    with icicle). count_name names the values in tooltips ("samples", "us"...);
    None picks it from the profile's unit."""
    count_name = count_name or unit_label(profile)
    rects = layout(build_tree(profile), min_fraction=min_fraction)
    subtitle = f"{rects[0].value:,} {count_name} in {len(profile.samples):,} stacks"
    return _page(_data(rects, title=title, count_name=count_name, icicle=icicle,
                       subtitle=subtitle, unit=profile.unit), title)


def diff_tree(before: StackProfile, after: StackProfile) -> Node:
    """after's tree, each node also holding before's value scaled to after's total."""
    tree = build_tree(after)
    weight = after.total / before.total if before.total else 0.0
    return build_tree(before, weight=weight, into=tree, as_before=True)


def diff_flamegraph_html(before: StackProfile, after: StackProfile, *,
                         title: str = "Differential Flame Graph", icicle: bool = False,
                         count_name: str | None = "samples", negate: bool = False,
                         min_fraction: float = MIN_FRACTION) -> str:
    """A differential flame graph: the layout of `after` (of `before` with
    negate), frames coloured by the change of their inclusive value once both
    totals are normalized to the same size: red grew, blue shrank."""
    count_name = count_name or unit_label(after)
    if negate:   # lay out `before`; colours keep meaning "after minus before"
        tree = diff_tree(after, before)
        delta = lambda n: n.before - n.value   # noqa: E731
    else:
        tree = diff_tree(before, after)
        delta = lambda n: n.value - n.before   # noqa: E731
    peak = _peak_change(tree, delta)
    rects = layout(tree, min_fraction=min_fraction, fill=lambda n: diff_fill(delta(n), peak))
    scale = (after.total / before.total) if before.total else 0.0
    subtitle = (f"before {before.total:,} {count_name}, after {after.total:,}; before scaled "
                f"by {scale:.4g} so totals match. Red grew, blue shrank.")
    return _page(_data(rects, title=title, count_name=count_name, icicle=icicle,
                       subtitle=subtitle, diff=True, negate=negate, unit=after.unit), title)


def _peak_change(root: Node, delta) -> float:
    peak, todo = 0.0, list(root.children.values())
    while todo:
        node = todo.pop()
        peak = max(peak, abs(delta(node)))
        todo.extend(node.children.values())
    return peak


def page_data(page: str) -> dict:
    """The JSON a page embeds (for tests and tools that read pages back)."""
    start_tag = '<script type="application/json" id="flamegraph-data">'
    start = page.index(start_tag) + len(start_tag)
    end = page.index("</script>", start)
    return json.loads(page[start:end].replace("<\\/", "</"))


def main(argv: list[str] | None = None) -> int:
    import argparse

    from ..errors import PytracekitError
    from .flamegraph_svg import flamegraph_svg
    from .folded import parse_folded
    parser = argparse.ArgumentParser(
        prog="python -m pytracekit.render.flamegraph",
        description="Folded stacks (flamegraph.pl input) to one interactive HTML flame graph.")
    parser.add_argument("files", nargs="*", help="folded stacks; stdin when none; "
                        "two files with --diff: before after")
    parser.add_argument("-o", "--output", help="write here instead of stdout")
    parser.add_argument("--title", default=None)
    parser.add_argument("--icicle", action="store_true", help="root at the top")
    parser.add_argument("--countname", default="samples", help="unit shown in tooltips")
    parser.add_argument("--diff", action="store_true", help="differential: BEFORE AFTER")
    parser.add_argument("--negate", action="store_true", help="with --diff: lay out BEFORE")
    parser.add_argument("--svg", action="store_true",
                        help="a static SVG image (tooltips, no zoom or search)")
    args = parser.parse_args(argv)
    try:
        if args.diff:
            if len(args.files) != 2 or args.svg:
                parser.error("--diff needs two files, BEFORE AFTER, and makes HTML only")
            before, after = (parse_folded(Path(f).read_text()) for f in args.files)
            page = diff_flamegraph_html(before, after, icicle=args.icicle, negate=args.negate,
                                        count_name=args.countname,
                                        title=args.title or "Differential Flame Graph")
        else:
            text = "".join(Path(f).read_text() for f in args.files) if args.files \
                else sys.stdin.read()
            render = flamegraph_svg if args.svg else flamegraph_html
            page = render(parse_folded(text), icicle=args.icicle, count_name=args.countname,
                          title=args.title or ("Icicle Graph" if args.icicle else "Flame Graph"))
    except OSError as exc:
        print(f"flamegraph: error: cannot read {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 1
    except PytracekitError as exc:
        print(f"flamegraph: error: {exc.message}", file=sys.stderr)
        return exc.exit_status
    if args.output:
        from ..outfile import write_file
        try:
            write_file(args.output, page.encode())
        except PytracekitError as exc:
            print(f"flamegraph: error: {exc.message}", file=sys.stderr)
            return exc.exit_status
    else:
        sys.stdout.write(page)
    return 0


if __name__ == "__main__":
    sys.exit(main())
