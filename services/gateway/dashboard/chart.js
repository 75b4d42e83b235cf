// Line charts drawn as SVG by this page's own code, each with its numbers as
// text: an aria label with the latest values and a table of the points.
import { el } from "./dom.js";

const W = 600, H = 180, PAD = { l: 52, r: 10, t: 10, b: 22 };

function extent(values, floor) {
  let lo = Math.min(...values), hi = Math.max(...values);
  if (floor !== undefined) lo = Math.min(lo, floor);
  if (!isFinite(lo) || !isFinite(hi)) return [0, 1];
  if (hi === lo) hi = lo + (Math.abs(lo) || 1);
  return [lo, hi];
}

// series: [{name, points: [[t_seconds, value], ...]}]; opts: {id, title, unit,
// format(v), x0, x1 (seconds), cap: {value, label}, rows (table length)}
export function lineChart(series, opts) {
  const fmt = opts.format || (v => v.toFixed(2));
  const pts = series.flatMap(s => s.points);
  const times = pts.map(p => p[0]);
  const x0 = opts.x0 ?? Math.min(...times), x1 = Math.max(opts.x1 ?? -Infinity, ...times, x0 + 1);
  const values = pts.map(p => p[1]).concat(opts.cap ? [opts.cap.value] : []);
  const [y0, y1] = extent(values.length ? values : [0], 0);
  const X = t => PAD.l + ((t - x0) / (x1 - x0)) * (W - PAD.l - PAD.r);
  const Y = v => H - PAD.b - ((v - y0) / (y1 - y0)) * (H - PAD.t - PAD.b);
  const latest = series.map(s => {
    const last = s.points[s.points.length - 1];
    return `${s.name} ${last ? fmt(last[1]) : "no data"}`;
  }).join(", ");
  const svg = el("svg:svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img",
                              "aria-label": `${opts.title}: ${latest}` });
  svg.append(el("svg:line", { class: "axis", x1: PAD.l, y1: H - PAD.b, x2: W - PAD.r, y2: H - PAD.b }));
  svg.append(el("svg:line", { class: "axis", x1: PAD.l, y1: PAD.t, x2: PAD.l, y2: H - PAD.b }));
  for (const v of [y0, (y0 + y1) / 2, y1]) {
    svg.append(el("svg:text", { x: PAD.l - 4, y: Y(v) + 4, "text-anchor": "end" }, fmt(v)));
  }
  const tlabel = t => new Date(t * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", hour12: false });
  svg.append(el("svg:text", { x: PAD.l, y: H - 6 }, tlabel(x0)));
  svg.append(el("svg:text", { x: W - PAD.r, y: H - 6, "text-anchor": "end" }, tlabel(x1)));
  if (opts.cap) {
    svg.append(el("svg:line", { class: "cap", x1: PAD.l, x2: W - PAD.r, y1: Y(opts.cap.value), y2: Y(opts.cap.value) }));
    svg.append(el("svg:text", { x: W - PAD.r, y: Y(opts.cap.value) - 3, "text-anchor": "end" }, opts.cap.label));
  }
  series.forEach((s, i) => {
    if (!s.points.length) return;
    const d = s.points.map((p, j) => `${j ? "L" : "M"}${X(p[0]).toFixed(1)},${Y(p[1]).toFixed(1)}`).join("");
    const one = s.points.length === 1 ? `h1` : "";
    svg.append(el("svg:path", { class: `s${(i % 4) + 1}`, d: d + one, "data-series": s.name }));
  });
  const legend = el("div", { class: "legend", "aria-hidden": "true" },
    series.map((s, i) => el("span", { class: `k${(i % 4) + 1}` }, `\u25A0 ${s.name}`)));
  return el("figure", { id: opts.id || null, class: "figure" },
    el("figcaption", {}, opts.title, opts.unit ? ` (${opts.unit})` : ""), svg, legend,
    numbers(series, fmt, opts));
}

function numbers(series, fmt, opts) {
  // The chart's points as a table (newest first, bounded), for reading and for
  // screen readers: the same numbers the lines are drawn from.
  const times = [...new Set(series.flatMap(s => s.points.map(p => p[0])))].sort((a, b) => b - a)
    .slice(0, opts.rows || 30);
  const at = series.map(s => new Map(s.points.map(p => [p[0], p[1]])));
  const rows = times.map(t => el("tr", {},
    el("td", {}, new Date(t * 1000).toLocaleTimeString([], { hour12: false })),
    at.map(m => el("td", { class: "num" }, m.has(t) ? fmt(m.get(t)) : ""))));
  return el("details", {},
    el("summary", {}, `Numbers (${times.length} newest points)`),
    el("table", { class: "chart-numbers" },
      el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "time"),
        series.map(s => el("th", { scope: "col", class: "num" }, s.name)))),
      el("tbody", {}, rows)));
}
