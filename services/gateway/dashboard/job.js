// A job's page: its state, its events as a timeline, and the decision
// explained (the recorded job.advised, the advisor's details on the same spec,
// and "what would change it": the spec with the operator's numbers, advised again).
import { api } from "./api.js";
import { badge, clock, el, notice, num, replace, table, usd } from "./dom.js";
import { why } from "./panels.js";

export const job = {
  id: null,
  async show(id) {
    this.id = id;
    replace("job-body", el("p", {}, `Loading job ${id}...`));
    await this.refresh();
  },
  async refresh() {
    const id = this.id;
    let view, page;
    try {
      [view, page] = await Promise.all([
        api("GET", `/api/jobs/${encodeURIComponent(id)}`),
        api("GET", `/api/events?key=${encodeURIComponent(id)}&limit=500`),
      ]);
    } catch (e) { replace("job-body", notice(e.message, true)); return; }
    if (id !== this.id) return;
    const events = page.events.map(s => ({ seq: s.seq, ...s.event }));
    const advised = [...events].reverse().find(e => e.type === "job.advised");
    const t0 = events.length ? events[0].ts : view.submitted_ts;
    const body = document.getElementById("job-body");
    const keep = body.querySelector("#whatif-result");
    replace(body,
      el("h2", {}, "Job ", el("code", {}, view.job_id), " ", el("span", { id: "job-state" }, badge(view.state))),
      el("dl", { class: "kv" },
        el("dt", {}, "kind / executor"), el("dd", {}, `${view.kind || "-"} / ${view.executor || "-"}`),
        el("dt", {}, "target"), el("dd", {}, view.decision ? `${view.decision.target}${view.decision.provider ? " (" + view.decision.provider + ")" : ""}` : "-"),
        el("dt", {}, "attempts"), el("dd", {}, `${view.attempts} of ${view.max_attempts}${view.reroutes ? `, rerouted ${view.reroutes}x` : ""}`),
        el("dt", {}, "progress"), el("dd", {}, typeof view.progress === "number" ? `${Math.round(view.progress * 100)}%` : "-"),
        el("dt", {}, "cost"), el("dd", {}, view.cost_usd === null || view.cost_usd === undefined ? "-" : `${usd(view.cost_usd)}${view.dry_run ? " (dry run)" : ""}`),
        el("dt", {}, "why"), el("dd", { id: "job-why" }, why(view) || "-"),
        el("dt", {}, "artifacts"), el("dd", {}, view.artifacts.length ? view.artifacts.join(", ") : "-")),
      el("h3", {}, "Timeline"),
      el("ol", { class: "timeline", id: "job-timeline" }, events.map(e => el("li", {},
        el("strong", {}, e.type), ` +${num(e.ts - t0, 2)} s (${clock(e.ts)}, seq ${e.seq}, ${e.source}) `,
        el("span", { class: "muted" }, summary(e))))),
      el("section", { id: "decision", "aria-labelledby": "decision-h" },
        el("h3", { id: "decision-h" }, "The decision explained"),
        advised ? explainRecorded(advised) : el("p", { class: "muted" }, "Not advised yet."),
        el("div", { id: "decision-details" }),
        advised && advised.data.inputs ? whatIfForm(advised) : null,
        keep || el("div", { id: "whatif-result", "aria-live": "polite" })));
    if (advised && advised.data.inputs && advised.data.inputs.spec && !this.detailed) {
      this.detailed = id;
      details(advised.data.inputs.spec).catch(e => replace("decision-details", notice(e.message, true)));
    } else if (this.detailed === id && this.detailsNode) {
      replace("decision-details", this.detailsNode);
    }
  },
  interested(ev) { return this.id !== null && ev.key === this.id; },
  hide() { this.id = null; this.detailed = null; this.detailsNode = null; },
};

function summary(e) {
  const d = e.data || {};
  return d.reason || d.line || d.error || (d.code ? `${d.code}` : "") ||
    (d.target ? `target ${d.target}` : "") || (d.value !== undefined && d.maximum ? `${d.value}/${d.maximum}` : "");
}

function explainRecorded(ev) {
  const d = ev.data, inputs = d.inputs || {}, dec = inputs.decision || {};
  const spec = inputs.spec || {};
  return el("div", { id: "decision-recorded" },
    el("p", {}, "Rule ", el("strong", { id: "decision-rule" }, d.rule), " sent it to ",
      el("strong", {}, d.target), d.provider ? ` (${d.provider})` : "", "."),
    el("p", { id: "decision-reason" }, d.reason),
    el("dl", { class: "kv" },
      el("dt", {}, "job"), el("dd", {}, `${spec.kind || "image"} ${spec.width ?? "default"}x${spec.height ?? "default"}, batch ${spec.batch ?? 1}, frames ${spec.frames ?? 1}`),
      el("dt", {}, "VRAM demand"), el("dd", {}, num(dec.vram_demand_gb, 2, " GB")),
      el("dt", {}, "estimate"), el("dd", {}, `${num(dec.estimated_minutes, 2, " min")}, ${usd(d.estimate_usd ?? dec.estimate_usd)}`),
      el("dt", {}, "remote queue depth"), el("dd", {}, String(inputs.remote_queue_depth ?? "-")),
      el("dt", {}, "flags"), el("dd", {}, Object.entries(inputs.flags || {}).map(([k, v]) => `${k}=${v}`).join(", ") || "-"),
      el("dt", {}, "recorded at"), el("dd", {}, `store position ${inputs.state_position ?? "-"}, telemetry ${inputs.telemetry_sample_id || "-"}`)));
}

async function details(spec) {
  // The advisor's details block on the recorded spec, as it decides now: the
  // numbers (pixels, VRAM demand, free VRAM, queue depth, prices) and every
  // target it ruled out, with why.
  const d = await api("POST", "/api/compute/advise", { ...spec, debug: true });
  const x = d.details;
  if (!x) return;
  const node = el("div", {},
    el("h3", {}, "The numbers the rules use (the advisor now, same spec)"),
    el("dl", { class: "kv", id: "decision-numbers" },
      el("dt", {}, "pixels"), el("dd", {}, `${x.derived.pixels} (${x.derived.width}x${x.derived.height}), ${num(x.derived.megapixels_total, 2)} MP in all`),
      el("dt", {}, "VRAM demand"), el("dd", {}, `${num(x.derived.vram_demand_gb, 2)} GB: ${x.derived.vram_formula}`),
      el("dt", {}, "free VRAM"), el("dd", {}, x.context.gpus_free_gb.length ? x.context.gpus_free_gb.map(g => num(g, 2, " GB")).join(", ") : `no GPU (${x.context.telemetry_reason || "none listed"})`),
      el("dt", {}, "RAM available"), el("dd", {}, num(x.context.ram_available_gb, 2, " GB")),
      el("dt", {}, "remote queue depth"), el("dd", {}, String(x.context.remote_queue_depth)),
      el("dt", {}, "minutes"), el("dd", {}, `local GPU ${num(x.derived.minutes_local_gpu, 2)}, CPU ${num(x.derived.minutes_cpu, 2)}`),
      el("dt", {}, "thresholds"), el("dd", {}, `local GPU headroom ${x.thresholds.local_gpu.headroom_gb} GB + ${x.thresholds.local_gpu.headroom_fraction * 100}%, CPU up to ${x.thresholds.cpu.max_megapixels} MP and ${x.thresholds.cpu.max_minutes} min, remote queue saturated at ${x.thresholds.remote.queue_saturated_at}`)),
    table("Targets weighed (ruled out: why)", ["rule", "target", "feasible", "why", "#minutes", "#USD"],
      x.candidates.map(c => ({ cls: c.feasible ? null : "ruled-out", cells: [c.rule, `${c.target}${c.provider_id ? " " + c.provider_id : ""}${c.gpu ? " " + c.gpu : ""}`,
        c.feasible ? "yes" : "no", c.why, num(c.minutes, 2), usd(c.estimate_usd)] })), { id: "decision-candidates" }),
    el("p", {}, "Now: ", el("strong", {}, d.rule), ` -> ${d.target}: ${d.reason}`));
  job.detailsNode = node;
  replace("decision-details", node);
}

const WHATIF_FIELDS = [
  ["width", "pixels"], ["height", "pixels"], ["batch", ""], ["vram_gb", "GB, replaces the estimate"],
  ["max_cost_usd", "USD, caps a remote price"], ["prefer", "local, cpu, remote or a provider id"],
];

function whatIfForm(ev) {
  const spec = ev.data.inputs.spec || {};
  const inputs = WHATIF_FIELDS.map(([name, hint]) => el("label", { class: "field" }, name,
    el("input", { name, value: spec[name] === undefined || spec[name] === null ? "" : String(spec[name]),
                  inputmode: name === "prefer" ? "text" : "decimal", size: "10" }),
    el("span", { class: "hint muted" }, hint)));
  const form = el("form", { id: "whatif" },
    el("h3", {}, "What would change it"),
    el("p", { class: "muted" }, "Change the job's numbers and ask the advisor again (no job is created)."),
    inputs, el("button", { type: "submit" }, "Advise with these"));
  form.addEventListener("submit", async e => {
    e.preventDefault();
    const next = { ...spec };
    for (const [name] of WHATIF_FIELDS) {
      const v = form.elements[name].value.trim();
      if (v === "") delete next[name];
      else next[name] = name === "prefer" ? v : Number(v);
    }
    try {
      const [d, costs] = await Promise.all([
        api("POST", "/api/compute/advise", next),
        api("POST", "/api/compute/costs", { queue: "remote", job: next }, { accept: [404] }),
      ]);
      const changed = d.target !== ev.data.target || d.rule !== ev.data.rule;
      replace("whatif-result",
        el("p", {}, el("strong", {}, changed ? "Changes: " : "Same decision: "),
          `${ev.data.rule} -> ${ev.data.target} becomes ${d.rule} -> ${d.target}${d.provider_id ? " (" + d.provider_id + ")" : ""}. ${d.reason}`),
        costs && costs.comparison ? table("Remote prices for this job", ["provider", "gpu", "#minutes", "#USD"],
          costs.comparison.map(c => ({ cells: [c.provider_id || c.target, c.gpu || "-", num(c.minutes_total, 2), usd(c.estimate)] }))) : null);
    } catch (err) { replace("whatif-result", notice(err.message, true)); }
  });
  return form;
}
