// pytracekit flame graph page. Python (pytracekit/render/flamegraph.py) has
// already laid the frames out and coloured them; this script scales them to
// the window, draws them as SVG, and handles zoom, search and tooltips.
// Search can be preset with #search=REGEXP or ?search=REGEXP in the URL.
"use strict";
(function () {
  const DATA = JSON.parse(document.getElementById("flamegraph-data").textContent);
  const ROW = 16, CHAR_WIDTH = 7.2, SVG_NS = "http://www.w3.org/2000/svg";
  const F = {};
  DATA.fields.forEach(function (name, i) { F[name] = i; });
  const frames = DATA.frames.map(function (row, i) {
    return {
      i: i, name: DATA.names[row[F.name]], kind: row[F.kind], depth: row[F.depth],
      start: row[F.start], value: row[F.value], self: row[F.self], fill: row[F.fill],
      before: row[F.before], match: false,
    };
  });
  const maxDepth = frames.reduce(function (m, f) { return Math.max(m, f.depth); }, 0);
  const chart = document.getElementById("chart");
  const tooltip = document.getElementById("tooltip");
  const details = document.getElementById("details");
  const matched = document.getElementById("matched");
  const searchBox = document.getElementById("search");
  let zoomed = frames[0];
  let term = "";

  document.getElementById("subtitle").textContent = DATA.subtitle;

  function fmt(n) { return Math.round(n).toLocaleString("en-US"); }
  function pct(part, whole) { return whole ? (100 * part / whole).toFixed(2) + "%" : "0%"; }

  function contains(outer, inner) {
    return inner.start >= outer.start && inner.start + inner.value <= outer.start + outer.value;
  }

  function darkFill(fill) {
    // Black labels on light fills, white on dark ones (deep blue in a diff graph).
    const c = (fill.match(/\d+/g) || [255, 255, 255]).map(Number);
    return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2] < 110;
  }

  function label(name, width) {
    const room = Math.floor((width - 6) / CHAR_WIDTH);
    if (room < 3) return "";
    return name.length <= room ? name : name.slice(0, room - 2) + "..";
  }

  function describe(f) {
    const total = DATA.total, unit = DATA.count_name;
    let text = f.name + (f.kind && f.kind !== "root" ? " [" + f.kind + "]" : "");
    if (DATA.diff) {
      const after = DATA.negate ? f.before : f.value;
      const before = DATA.negate ? f.value : f.before;
      const change = after - before;
      return text + "\nafter: " + fmt(after) + " " + unit + " (" + pct(after, total) + ")" +
        "\nbefore (normalized): " + fmt(before) + " (" + pct(before, total) + ")" +
        "\nchange: " + (change >= 0 ? "+" : "") + fmt(change) + " (" +
        (change >= 0 ? "+" : "") + pct(change, total) + " of the total)";
    }
    text += "\n" + fmt(f.value) + " " + unit + " (" + pct(f.value, total) + " of all";
    if (zoomed !== frames[0]) text += ", " + pct(f.value, zoomed.value) + " of " + zoomed.name;
    text += ")\nself: " + fmt(f.self) + " " + unit + " (" + pct(f.self, total) + ")";
    return text;
  }

  function render() {
    if (!DATA.total) {
      chart.textContent = "No stacks were recorded.";
      return;
    }
    const width = Math.max(200, chart.clientWidth);
    const height = (maxDepth + 1) * ROW;
    const scale = width / (zoomed.value || 1);
    const svg = document.createElementNS(SVG_NS, "svg");
    svg.setAttribute("width", width);
    svg.setAttribute("height", height);
    svg.setAttribute("id", "flamegraph");
    frames.forEach(function (f) {
      let x, w, ancestor = false;
      if (f.depth >= zoomed.depth && contains(zoomed, f)) {
        x = (f.start - zoomed.start) * scale;
        w = f.value * scale;
      } else if (f.depth < zoomed.depth && contains(f, zoomed)) {
        x = 0; w = width; ancestor = true;
      } else {
        return;
      }
      if (w < 0.5) return;
      const y = DATA.icicle ? f.depth * ROW : (maxDepth - f.depth) * ROW;
      const g = document.createElementNS(SVG_NS, "g");
      g.setAttribute("class", "frame" + (f.match ? " match" : "") + (ancestor ? " ancestor" : ""));
      g.setAttribute("data-i", f.i);
      g.setAttribute("data-name", f.name);
      const rect = document.createElementNS(SVG_NS, "rect");
      rect.setAttribute("x", x.toFixed(2));
      rect.setAttribute("y", y);
      rect.setAttribute("width", Math.max(w - 1, 0.5).toFixed(2));
      rect.setAttribute("height", ROW - 1);
      rect.setAttribute("fill", f.match ? DATA.search_fill : f.fill);
      g.appendChild(rect);
      const text = label(f.name, w);
      if (text) {
        const t = document.createElementNS(SVG_NS, "text");
        t.setAttribute("x", (x + 3).toFixed(2));
        t.setAttribute("y", y + 11.5);
        t.textContent = text;
        if (!f.match && darkFill(f.fill)) t.setAttribute("class", "light");
        g.appendChild(t);
      }
      svg.appendChild(g);
    });
    chart.replaceChildren(svg);
  }

  function frameOf(event) {
    const g = event.target.closest ? event.target.closest("g.frame") : null;
    return g ? frames[Number(g.getAttribute("data-i"))] : null;
  }

  function matchedShare() {
    // The union of matched frames' extents, so nested matches count once.
    const hits = frames.filter(function (f) { return f.match; })
      .sort(function (a, b) { return a.start - b.start || b.value - a.value; });
    let sum = 0, end = -1;
    hits.forEach(function (f) {
      const stop = f.start + f.value;
      if (f.start >= end) { sum += f.value; end = stop; }
      else if (stop > end) { sum += stop - end; end = stop; }
    });
    return sum;
  }

  function search(pattern) {
    term = pattern;
    let re = null;
    if (pattern) {
      try { re = new RegExp(pattern); }
      catch (e) { re = new RegExp(pattern.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")); }
    }
    frames.forEach(function (f) { f.match = re !== null && f.i !== 0 && re.test(f.name); });
    const share = re ? matchedShare() : 0;
    matched.textContent = re ? "Matched: " + pct(share, DATA.total) +
      " (" + fmt(share) + " " + DATA.count_name + ")" : "";
    render();
  }

  function zoom(f) {
    zoomed = f || frames[0];
    document.getElementById("reset").disabled = zoomed === frames[0];
    render();
  }

  chart.addEventListener("click", function (event) {
    const f = frameOf(event);
    if (f) zoom(f);
  });
  chart.addEventListener("mousemove", function (event) {
    const f = frameOf(event);
    if (!f) { tooltip.hidden = true; return; }
    tooltip.textContent = describe(f);
    tooltip.hidden = false;
    const left = Math.min(event.pageX + 12, window.scrollX + window.innerWidth -
                          tooltip.offsetWidth - 8);
    tooltip.style.left = Math.max(0, left) + "px";
    tooltip.style.top = (event.pageY + 14) + "px";
    details.textContent = describe(f).replace(/\n/g, "; ");
  });
  chart.addEventListener("mouseleave", function () { tooltip.hidden = true; });
  document.getElementById("reset").addEventListener("click", function () { zoom(null); });
  searchBox.addEventListener("input", function () { search(searchBox.value); });
  document.addEventListener("keydown", function (event) {
    if ((event.ctrlKey && event.key === "f") || (event.key === "/" &&
        document.activeElement !== searchBox)) {
      event.preventDefault();
      searchBox.focus();
    } else if (event.key === "Escape") {
      searchBox.value = "";
      search("");
    }
  });
  window.addEventListener("resize", render);

  function urlSearch() {
    // Not URLSearchParams: it would turn the "+" of a regexp into a space.
    const sources = [location.hash.replace(/^#/, ""), location.search.replace(/^\?/, "")];
    for (const source of sources) {
      for (const part of source.split("&")) {
        if (part.startsWith("search=") && part.length > 7) {
          try { return decodeURIComponent(part.slice(7)); } catch (e) { return part.slice(7); }
        }
      }
    }
    return "";
  }

  const preset = urlSearch();
  zoom(null);
  if (preset) {
    searchBox.value = preset;
    search(preset);
  }
})();
