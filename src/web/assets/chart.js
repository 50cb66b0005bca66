// A small SVG line chart for the pages' client-side series (the live page): x is
// a number (seconds), each series a list of [x, y] points. Points with a `link`
// are drawn as circles that open it. No library: the page loads nothing else.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"];

function svgEl(tag, attrs, text) {
  const e = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function fmtTick(v) {
  if (v === 0) return "0";
  if (Math.abs(v) >= 100) return v.toFixed(0);
  if (Math.abs(v) >= 1) return v.toFixed(1);
  return v.toPrecision(2);
}

// lineChart(title, unit, [{name, points: [[x, y, link?]…]}]) → <svg>
function lineChart(title, unit, series) {
  const w = 520, h = 260, l = 56, r = 12, t = 30, b = 48;
  const pw = w - l - r, ph = h - t - b;
  const all = series.flatMap(s => s.points).filter(p => Number.isFinite(p[1]));
  const xmin = all.length ? Math.min(...all.map(p => p[0])) : 0;
  const xmax = all.length ? Math.max(...all.map(p => p[0])) : 1;
  const ymax = niceMax(Math.max(0, ...all.map(p => p[1])) * 1.05);
  const xpos = x => l + (xmax > xmin ? pw * (x - xmin) / (xmax - xmin) : pw / 2);
  const ypos = y => t + ph * (1 - y / ymax);
  const svg = svgEl("svg", { class: "chart", viewBox: `0 0 ${w} ${h}`, width: w, height: h, role: "img", "data-title": title });
  svg.append(svgEl("text", { x: w / 2, y: 18, class: "ct" }, title));
  for (let k = 0; k <= 4; k++) {
    const v = ymax * k / 4, y = ypos(v);
    svg.append(svgEl("line", { x1: l, x2: l + pw, y1: y, y2: y, stroke: "#e3e3e3" }));
    svg.append(svgEl("text", { x: l - 6, y: y + 4, class: "yt" }, fmtTick(v)));
  }
  for (let k = 0; k <= 4; k++) {
    const x = xmin + (xmax - xmin) * k / 4;
    svg.append(svgEl("text", { x: xpos(x), y: t + ph + 16, class: "xt" }, fmtTick(x)));
  }
  svg.append(svgEl("text", { x: l + pw / 2, y: h - 14, class: "xl" }, "seconds"));
  svg.append(svgEl("text", { x: 12, y: t + ph / 2, class: "xl", transform: `rotate(-90 12 ${t + ph / 2})` }, unit));
  let drawn = 0;
  series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length];
    const pts = s.points.filter(p => Number.isFinite(p[1]));
    if (pts.length) {
      svg.append(svgEl("polyline", {
        points: pts.map(p => `${xpos(p[0]).toFixed(1)},${ypos(p[1]).toFixed(1)}`).join(" "),
        fill: "none", stroke: color, "stroke-width": 1.6,
      }));
      drawn += pts.length;
    }
    for (const p of pts) {
      if (!p[2]) continue;
      const c = svgEl("circle", { cx: xpos(p[0]), cy: ypos(p[1]), r: 3, fill: color, class: "slow" });
      c.append(svgEl("title", {}, "open this request's row"));
      const a = svgEl("a", { href: p[2] });
      a.append(c);
      svg.append(a);
    }
    const lx = l + 8 + i * 120;
    svg.append(svgEl("rect", { x: lx, y: h - 10, width: 10, height: 3, fill: color }));
    svg.append(svgEl("text", { x: lx + 14, y: h - 6, class: "lg" }, s.name));
  });
  svg.dataset.points = drawn;
  return svg;
}
