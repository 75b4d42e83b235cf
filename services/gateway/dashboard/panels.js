// The overview's panels. Each has refresh() (read its routes, draw) and
// event(ev) (a live event it cares about). A panel whose service does not
// answer says so instead of its figures.
import { api, ApiError, hasRoute, document_ } from "./api.js";
import { lineChart } from "./chart.js";
import { badge, clock, duration, el, notice, num, pick, replace, table, usd } from "./dom.js";

const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);

export function down(id, what, e) {
  // 404 (no such route in this version), 503 (nobody answers), 504 (too late):
  // the panel says which, with the gateway's own sentence.
  const why = e instanceof ApiError && e.status === 503 ? `${what} is not running (no service answers)`
    : e instanceof ApiError && e.status === 404 ? `${what} is not part of this gateway`
    : e instanceof ApiError && e.status === 504 ? `${what} did not answer in time`
    : `${what} cannot be read`;
  replace(id, notice(`${why}: ${e.message}`, true));
}

// -- jobs -----------------------------------------------------------------------

export const jobs = {
  async init() {
    const doc = await document_();
    const param = (doc.paths["/api/jobs"]?.get?.parameters || []).find(p => p.name === "state");
    const states = param ? (param.schema.enum || param.schema.anyOf?.flatMap(s => s.enum || []) || []) : [];
    const select = document.getElementById("jobs-state");
    states.forEach(s => select.append(el("option", { value: s }, s)));
    select.addEventListener("change", () => this.refresh());
  },
  async refresh() {
    const state = document.getElementById("jobs-state").value;
    const q = new URLSearchParams({ limit: "100" });
    if (state) q.set("state", state);
    let list;
    try { list = await api("GET", `/api/jobs?${q}`); }
    catch (e) { down("jobs-body", "the scheduler", e); return; }
    const now = Date.now() / 1000;
    const rows = list.jobs.map(j => ({
      key: j.job_id,
      cls: `job st-row-${j.state}`,
      cells: [
        el("a", { href: `#job/${encodeURIComponent(j.job_id)}` }, j.job_id),
        el("span", { class: "job-state" }, badge(j.state)),
        target(j),
        progress(j),
        `${j.attempts}/${j.max_attempts}`,
        j.cost_usd === null || j.cost_usd === undefined ? "-" : `${usd(j.cost_usd)}${j.dry_run ? " (dry run)" : ""}`,
        j.submitted_ts ? duration(now - j.submitted_ts) : "-",
        el("span", { class: "job-why" }, why(j)),
      ],
    }));
    replace("jobs-count", `${list.jobs.length}${list.more ? "+" : ""} jobs, newest first`);
    replace("jobs-body", rows.length
      ? table(null, ["job", "state", "target", "progress", "#attempts", "#cost", "#age", "why"], rows, { id: "jobs-table" })
      : el("p", { class: "muted" }, "No jobs yet. Submit one: gpuroute submit, or POST /api/jobs."));
  },
  interested(ev) { return ev.type.startsWith("job."); },
};

function target(j) {
  const d = j.decision;
  if (!d) return "-";
  return `${d.target}${d.provider ? ` (${d.provider})` : ""}`;
}

function progress(j) {
  const pct = j.state === "succeeded" ? 100 : typeof j.progress === "number" ? Math.round(j.progress * 100) : null;
  if (pct === null) return el("span", { class: "muted" }, TERMINAL.has(j.state) ? "-" : "waiting");
  return el("span", {}, el("progress", { max: "100", value: String(pct), "aria-label": `progress ${pct}%` }), ` ${pct}%`);
}

export function why(j) {
  if (j.state === "failed" && j.error) return `${j.error_code ? j.error_code + ": " : ""}${j.error}`;
  if (j.budget && ["delayed", "queued", "waiting"].includes(j.state))
    return `${j.budget.code}${j.budget.reason ? ": " + j.budget.reason : ""}`;
  if (j.decision && !TERMINAL.has(j.state)) return j.decision.reason;
  return j.last_line || "";
}

// -- GPUs and host ----------------------------------------------------------------

const HOUR = 3600;
export const gpus = {
  samples: [],
  async refresh() {
    let list;
    try { list = await api("GET", "/api/gpu/list"); }
    catch (e) { down("gpus-body", "the advisor (telemetry)", e); return; }
    if (!this.samples.length) {
      try {
        const page = await api("GET", "/api/events?type=telemetry.sampled&last=true&limit=720");
        this.samples = page.events.map(s => s.event.data);
      } catch { this.samples = []; }
    }
    this.list = list;
    this.draw();
  },
  event(ev) {
    if (ev.type !== "telemetry.sampled") return;
    this.samples.push(ev.data);
    if (this.samples.length > 2000) this.samples.splice(0, this.samples.length - 2000);
    this.draw();
  },
  draw() {
    const list = this.list;
    if (!list) return;
    const latest = this.samples[this.samples.length - 1];
    const now = Math.max(Date.now() / 1000, latest ? latest.ts : 0);
    const recent = this.samples.filter(s => s.ts >= now - HOUR);
    const parts = [];
    if (!list.count) {
      parts.push(notice(`No GPU: ${list.reason || latest?.reason || "telemetry lists none"}`));
    } else {
      parts.push(table(`${list.count} GPU(s), sample ${clock(list.ts)}`,
        ["GPU", "name", "#VRAM used / total", "#utilisation", "#temperature"],
        list.devices.map(d => ({ cells: [String(d.index), d.name || "-",
          `${num(d.memory_used_mib / 1024, 1)} / ${num(d.memory_total_mib / 1024, 1)} GiB`,
          num(d.utilization_gpu_pct, 0, " %"), num(d.temperature_c, 0, " \u00B0C")] }))));
      for (const d of list.devices) {
        const series = (key, f) => recent.map(s => {
          const g = (s.gpus || []).find(x => x.index === d.index);
          return g && typeof g[key] === "number" ? [s.ts, f(g[key])] : null;
        }).filter(Boolean);
        parts.push(el("div", { class: "grid2" },
          lineChart([{ name: "VRAM used", points: series("memory_used_mib", v => v / 1024) }],
                    { title: `GPU ${d.index} VRAM, last hour`, unit: "GiB", x0: now - HOUR, x1: now,
                      cap: d.memory_total_mib ? { value: d.memory_total_mib / 1024, label: "total" } : null }),
          lineChart([{ name: "utilisation %", points: series("utilization_gpu_pct", v => v) },
                     { name: "temperature \u00B0C", points: series("temperature_c", v => v) }],
                    { title: `GPU ${d.index} load, last hour`, x0: now - HOUR, x1: now, format: v => v.toFixed(0) })));
      }
    }
    const host = latest?.host;
    if (host) {
      parts.push(el("dl", { class: "kv" },
        el("dt", {}, "CPU"), el("dd", {}, `${num(host.cpu_percent, 0, " %")} of ${host.cpu_count ?? "?"} cores`),
        el("dt", {}, "RAM available"), el("dd", {}, `${num(host.ram_available_mib / 1024, 1)} of ${num(host.ram_total_mib / 1024, 1)} GiB`),
        el("dt", {}, "node"), el("dd", {}, latest.node || "-")));
      parts.push(lineChart([{ name: "CPU %", points: recent.filter(s => s.host && s.host.cpu_percent !== null).map(s => [s.ts, s.host.cpu_percent]) }],
        { title: "Host CPU, last hour", x0: now - HOUR, x1: now, format: v => v.toFixed(0) }));
    }
    replace("gpus-body", parts);
  },
};

// -- budgets ----------------------------------------------------------------------

export const budgets = {
  async refresh() {
    let snap, health;
    try {
      [snap, health] = await Promise.all([api("GET", "/api/perf/budgets"), api("GET", "/api/perf/health")]);
    } catch (e) { down("budgets-body", "the budget service", e); return; }
    const res = Object.entries(snap.resources || {});
    const parts = [
      el("p", {}, snap.enforce ? "Limits are enforced." : "Limits are observed, not enforced.",
        ` Queued ${snap.queued.length}, delayed ${snap.delayed.length}, running ${snap.running.length}.`),
      table("Limits and what is held", ["resource", "#limit", "#held", "#free", "#in use"],
        res.map(([name, r]) => ({ cells: [name, num(r.limit, 0), num(r.held, 0), num(r.free, 0), num(r.in_use, 0)] }))),
      el("details", {}, el("summary", {}, "All limits"),
        el("dl", { class: "kv" }, Object.entries(snap.limits).flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, String(v))]))),
    ];
    const jobsRows = snap.jobs.filter(j => j.queue_state !== "finished").slice(0, 50).map(j => ({
      cells: [j.job_id, badge(j.queue_state), j.code, j.reason] }));
    parts.push(jobsRows.length ? table("Jobs the budget holds (reason codes)", ["job", "state", "code", "reason"], jobsRows)
                               : el("p", { class: "muted" }, "No job held by the budget."));
    const assets = [...snap.assets].sort((a, b) => b.last_used - a.last_used).slice(0, 30);
    if (assets.length) parts.push(table("Lazy assets by last use", ["asset", "kind", "device", "#MB", "last used"],
      assets.map(a => ({ cells: [a.asset_id, a.kind, a.device, String(a.size_mb), clock(a.last_used)] }))));
    if (health.top_offenders.length) parts.push(table("Top offenders (VRAM, then RAM)", ["job", "type", "state", "code"],
      health.top_offenders.map(j => ({ cells: [j.job_id, j.job_type, j.queue_state, j.code] }))));
    if (health.top_time.length) parts.push(table("Profiler: most time", ["span", "category", "#count", "#total ms", "#max ms"],
      health.top_time.map(s => ({ cells: [s.name, s.category, String(s.count), num(s.total_ms, 1), num(s.max_ms, 1)] }))));
    replace("budgets-body", parts);
  },
  interested(ev) { return /^(budget|asset|profiler)\./.test(ev.type); },
};

// -- cloud ------------------------------------------------------------------------

export const cloud = {
  spend: [],  // [[ts, spent, reserved]] of today, from the cost route and its events
  async refresh() {
    if (!(await hasRoute("GET", "/api/cloud/status"))) {
      replace("cloud-body", notice("The cloud service is not part of this gateway (no /api/cloud routes)."));
      return;
    }
    let status, cost;
    try {
      [status, cost] = await Promise.all([api("GET", "/api/cloud/status"), api("GET", "/api/cloud/cost")]);
    } catch (e) { down("cloud-body", "the cloud service", e); return; }
    const spent = pick(cost, "todaySpent", "spentToday", "today.spent");
    const reserved = pick(cost, "todayReserved", "reservedToday", "today.reserved");
    const cap = pick(cost, "dailyCap", "today.cap", "dailyCostLimit");
    const now = Date.now() / 1000;
    if (!this.seeded) {
      // the day so far: the totals each reservation recorded (spent_usd, reserved_usd)
      this.seeded = true;
      try {
        const page = await api("GET", "/api/events?type=cloud.cost_limit_reached&types=cloud.cost.reserved&last=true&limit=1000");
        const seen = page.events.map(s => s.event).filter(e => typeof e.data.spent_usd === "number");
        this.spend = seen.map(e => [e.ts, e.data.spent_usd, e.data.reserved_usd ?? 0]).concat(this.spend);
      } catch { /* the live points still come */ }
    }
    if (typeof spent === "number") {
      const last = this.spend[this.spend.length - 1];
      if (!last || last[1] !== spent || last[2] !== reserved || now - last[0] > 60) this.spend.push([now, spent, reserved ?? 0]);
    }
    const day = new Date(); day.setHours(0, 0, 0, 0);
    this.spend = this.spend.filter(p => p[0] >= day.getTime() / 1000).slice(-2000);
    const pods = status.pods || [];
    const parts = [
      el("dl", { class: "kv" },
        el("dt", {}, "available"), el("dd", {}, String(status.available)),
        el("dt", {}, "pods"), el("dd", {}, `${status.activePods ?? pods.length} active, ${status.busyPods ?? 0} busy`),
        el("dt", {}, "jobs processed"), el("dd", {}, String(status.totalJobsProcessed ?? "-")),
        el("dt", {}, "total cost"), el("dd", { id: "cloud-total" }, usd(pick(cost, "totalCost") ?? status.totalCost)),
        el("dt", {}, "today"), el("dd", { id: "cloud-today" },
          `spent ${usd(spent)}, reserved ${usd(reserved)} of the daily cap ${usd(cap, 2)}`),
        el("dt", {}, "average per job"), el("dd", {}, usd(cost.avgCostPerJob))),
      pods.length
        ? table("Pods", ["pod", "status", "busy", "#jobs", "#$/hour", "#cost", "#uptime", "#idle", "dry run"],
            pods.map(p => ({ key: p.id, cells: [p.id, badge(p.status), p.busy ? "busy" : "idle", String(p.jobsProcessed ?? 0),
              num(p.costPerHour, 3), usd(p.cost), duration(p.uptime), duration(p.idleTime), p.dry_run ? "yes" : "no"] })), { id: "pods-table" })
        : el("p", { class: "muted" }, "No pod running."),
      lineChart([{ name: "spent", points: this.spend.map(p => [p[0], p[1]]) },
                 { name: "reserved", points: this.spend.map(p => [p[0], p[2]]) }],
        { id: "cost-chart", title: "Today's cloud spend", unit: "USD", x0: day.getTime() / 1000, x1: now,
          format: v => v.toFixed(4), cap: typeof cap === "number" ? { value: cap, label: `cap ${usd(cap, 2)}` } : null }),
    ];
    const byPod = cost.costByPod && Object.entries(cost.costByPod);
    if (byPod && byPod.length) parts.push(table("Cost by pod", ["pod", "#USD"], byPod.map(([k, v]) => ({ cells: [k, usd(v)] }))));
    replace("cloud-body", parts);
    this.active = pods.some(p => !["TERMINATED", "EXITED"].includes(p.status));
  },
  interested(ev) { return ev.type.startsWith("cloud."); },
};

// -- services ---------------------------------------------------------------------

export const services = {
  async refresh() {
    let h;
    try { h = await api("GET", "/health", undefined, { accept: [503] }); }
    catch (e) { down("services-body", "the gateway", e); return; }
    const rows = [];
    for (const [name, instances] of Object.entries(h.services || {})) {
      for (const i of instances) {
        const state = i.stale ? "stale" : i.faults && i.faults.length ? "faulted" : "fresh";
        rows.push({ key: `${name}/${i.instance}`, cls: i.stale ? "stale" : null, cells: [
          name, i.version, badge(state), `${num(i.age_s, 1)} s ago`, duration(i.uptime_s), String(i.pid),
          (i.faults || []).join("; ")] });
      }
    }
    for (const p of h.problems || []) {
      const m = /^service '([^']+)': no heartbeat seen/.exec(p);
      if (m) rows.push({ key: m[1], cls: "dead", cells: [m[1], "-", badge("dead"), "never", "-", "-", "expected, no heartbeat"] });
    }
    replace("services-body",
      h.ok ? el("p", {}, badge("live"), " healthy") : notice(`Problems: ${(h.problems || []).join(" | ")}`, true),
      table(`store: ${h.store && h.store.ok ? "ok" : "problem"}; NATS ${h.nats && h.nats.connected ? "connected" : "disconnected"}`,
        ["service", "version", "state", "last heartbeat", "uptime", "pid", "faults"], rows, { id: "services-table" }));
  },
};

// -- the live event tail ------------------------------------------------------------

export function matches(pattern, subject) {
  // NATS subject matching: ``*`` one token, ``>`` the rest.
  const p = pattern.trim().split("."), s = subject.split(".");
  for (let i = 0; i < p.length; i++) {
    if (p[i] === ">") return i < s.length;
    if (i >= s.length || (p[i] !== "*" && p[i] !== s[i])) return false;
  }
  return p.length === s.length;
}

const TAIL_MAX = 300;
export const tail = {
  items: [],
  paused: false,
  held: 0,
  init() {
    const button = document.getElementById("events-pause");
    button.addEventListener("click", () => {
      this.paused = !this.paused;
      button.textContent = this.paused ? "Resume" : "Pause";
      button.setAttribute("aria-pressed", String(this.paused));
      if (!this.paused) { this.held = 0; this.draw(); }
      this.status();
    });
    document.getElementById("events-filter").addEventListener("input", () => this.draw());
  },
  event(seq, ev) {
    this.items.push([seq, ev]);
    if (this.items.length > TAIL_MAX * 4) this.items.splice(0, this.items.length - TAIL_MAX * 4);
    if (this.paused) { this.held++; this.status(); return; }
    this.draw();
  },
  status() {
    replace("events-status", this.paused ? `paused, ${this.held} new event(s) held` : "live");
  },
  draw() {
    const pattern = document.getElementById("events-filter").value || ">";
    const shown = this.items.filter(([, ev]) => matches(pattern, ev.type)).slice(-TAIL_MAX).reverse();
    replace("events-body", table(null, ["#seq", "time", "type", "key", "source", "data"],
      shown.map(([seq, ev]) => ({ key: String(seq), cells: [String(seq), clock(ev.ts), ev.type, ev.key || "",
        ev.source || "", el("code", {}, JSON.stringify(ev.data).slice(0, 160))] })), { id: "events-table" }));
    this.status();
  },
};
