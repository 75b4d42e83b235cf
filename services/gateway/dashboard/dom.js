// DOM and formatting helpers of the dashboard. Every text goes in as a text
// node (never as HTML), so nothing an event or a service says can run here.

export function el(tag, attrs, ...children) {
  const node = tag.startsWith("svg:")
    ? document.createElementNS("http://www.w3.org/2000/svg", tag.slice(4))
    : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.setAttribute("class", v);
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k in node && !tag.startsWith("svg:") && typeof v !== "string") node[k] = v;
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

export function replace(target, ...children) {
  const node = typeof target === "string" ? document.getElementById(target) : target;
  node.replaceChildren(...children.flat(Infinity).filter(c => c !== undefined && c !== null && c !== false));
  return node;
}

export function table(caption, headers, rows, opts = {}) {
  const head = el("tr", {}, headers.map(h => el("th", { scope: "col", class: numeric(h) ? "num" : null }, label(h))));
  const body = rows.map(r => {
    const tr = el("tr", { class: r.cls || null, "data-key": r.key || null });
    r.cells.forEach((c, i) => tr.append(el("td", { class: numeric(headers[i]) ? "num" : null }, c)));
    return tr;
  });
  return el("div", { class: "scroll" }, el("table", { id: opts.id || null }, caption ? el("caption", {}, caption) : null,
    el("thead", {}, head), el("tbody", {}, body)));
}

function label(h) { return typeof h === "string" ? h.replace(/^#/, "") : h; }
function numeric(h) { return typeof h === "string" && h.startsWith("#"); }

export function badge(state) {
  return el("span", { class: `badge st-${String(state).replace(/[^A-Za-z0-9_-]/g, "_")}` }, state);
}

export function notice(text, down = false) {
  return el("p", { class: down ? "notice down" : "notice", role: "status" }, text);
}

export function usd(v, digits = 4) {
  return typeof v === "number" && isFinite(v) ? `$${v.toFixed(digits)}` : "-";
}

export function num(v, digits = 1, unit = "") {
  return typeof v === "number" && isFinite(v) ? `${v.toFixed(digits)}${unit}` : "-";
}

export function duration(seconds) {
  if (typeof seconds !== "number" || !isFinite(seconds)) return "-";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}

export function clock(ts) {
  if (typeof ts !== "number" || !isFinite(ts)) return "-";
  return new Date(ts * 1000).toLocaleTimeString([], { hour12: false });
}

export function pick(obj, ...paths) {
  // The first of ``paths`` (dotted) that ``obj`` has: the cloud routes' answers
  // are read by the names issue 14 gives, with the spellings seen in use.
  for (const p of paths) {
    let v = obj;
    for (const part of p.split(".")) v = v === null || v === undefined ? undefined : v[part];
    if (v !== undefined && v !== null) return v;
  }
  return undefined;
}

export function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    if (timer !== null) return;
    timer = setTimeout(() => { timer = null; fn(...args); }, ms);
  };
}
