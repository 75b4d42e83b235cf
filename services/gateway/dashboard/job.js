// A job's page: its state, its events as a timeline, and the decision
// explained (the recorded job.advised, the advisor's details on the same spec,
// "what would change it": the recorded decision re-run with the thresholds and
// prices the operator types, POST /api/advisor/whatif, and the spec with other
// numbers, advised again).
import { api, document_, schemaOf } from "./api.js";
import { badge, clock, el, notice, num, replace, table, usd } from "./dom.js";
import { why } from "./panels.js";
import { collect, fieldFor, formFor, validate } from "./settings.js";

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
        advised && advised.data.inputs && advised.data.inputs.decision ? this.replayForm(id) : null,
        advised && advised.data.inputs ? whatIfForm(advised) : null,
        keep || el("div", { id: "whatif-result", "aria-live": "polite" })));
    if (advised && advised.data.inputs && advised.data.inputs.spec && !this.detailed) {
      this.detailed = id;
      details(advised.data.inputs.spec).catch(e => replace("decision-details", notice(e.message, true)));
    } else if (this.detailed === id && this.detailsNode) {
      replace("decision-details", this.detailsNode);
    }
  },
  replayForm(id) {
    // Built once per job and moved into each re-render, so what the operator
    // typed survives the job's live updates.
    if (this.replay && this.replay.id === id) return this.replay.node;
    const node = el("section", { id: "what-would-change", "aria-labelledby": "wwc-h" },
      el("h3", { id: "wwc-h" }, "What would change it"), el("p", { class: "muted" }, "Loading the advisor's thresholds..."));
    this.replay = { id, node };
    replayForm(id).then(parts => replace(node, parts))
      .catch(e => replace(node, el("h3", { id: "wwc-h" }, "What would change it"), notice(e.message, true)));
    return node;
  },
  interested(ev) { return this.id !== null && ev.key === this.id; },
  hide() { this.id = null; this.detailed = null; this.detailsNode = null; this.replay = null; },
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
    el("h3", {}, "Other job numbers"),
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

async function replayForm(id) {
  // The job's recorded decision re-run in the context it was made in, with the
  // thresholds (current values from GET /api/advisor/config) and per-provider
  // hourly prices typed here; every field is checked against the route's
  // OpenAPI schema as it is typed and before anything is sent.
  const [doc, config, list] = await Promise.all([document_(), api("GET", "/api/advisor/config"),
                                                  api("GET", "/api/providers")]);
  const op = doc.paths["/api/advisor/whatif"]?.post;
  if (!op) return [el("h3", { id: "wwc-h" }, "What would change it"), notice("not part of this gateway")];
  const body = schemaOf(doc, op.requestBody.content["application/json"].schema);
  const alternatives = schemaOf(doc, body.properties.thresholds);
  const thresholdsSchema = (alternatives.anyOf || [alternatives]).map(a => schemaOf(doc, a)).find(a => a.type === "object");
  const priceSchema = schemaOf(doc, body.properties.price_overrides).additionalProperties;
  const rules = el("fieldset", { id: "wwc-thresholds" }, el("legend", {}, `Thresholds (the advisor's now, config ${config.config_digest})`),
    formFor(doc, thresholdsSchema, config.thresholds, "$"));
  const prices = el("fieldset", { id: "wwc-prices" }, el("legend", {}, "Prices, USD per hour for every GPU of a provider (empty: as registered)"),
    list.providers.map(p => {
      const field = fieldFor(doc, priceSchema, p.id, undefined, `$.price_overrides.${p.id}`);
      const input = field.querySelector("input");
      input.removeAttribute("data-path");
      input.dataset.provider = p.id;
      field.append(el("span", { class: "hint muted" }, priceRange(p)));
      return field;
    }));
  const result = el("div", { id: "wwc-result", "aria-live": "polite" });
  const form = el("form", { id: "wwc-form", novalidate: true },
    el("p", { class: "muted" }, "Re-runs the recorded decision on the same job and the same context (GPUs, flags, providers, queue) with these numbers. Nothing is recorded."),
    rules, prices, el("button", { type: "submit" }, "Re-run the decision"));
  form.addEventListener("submit", async e => {
    e.preventDefault();
    const problems = [...form.querySelectorAll("input")].map(i => i.check && i.check()).filter(Boolean);
    const request = { job_id: id, thresholds: collect(rules, config.thresholds), price_overrides: {} };
    for (const input of prices.querySelectorAll("input[data-provider]")) {
      const v = input.value.trim();
      if (v !== "") request.price_overrides[input.dataset.provider] = Number(v);
    }
    const whole = validate(doc, body, request, "whatif");
    if (problems.length || whole) { replace(result, notice(`Not sent: ${problems[0] || whole}`, true)); return; }
    try { replace(result, compare(await api("POST", "/api/advisor/whatif", request))); }
    catch (err) { replace(result, notice(err.message, true)); }
  });
  return [el("h3", { id: "wwc-h" }, "What would change it"), form, result];
}

function priceRange(p) {
  const hourly = p.gpus.map(g => g.unit === "second" ? g.price_usd * 3600 : g.price_usd);
  if (!hourly.length) return "no GPU offered";
  const lo = Math.min(...hourly), hi = Math.max(...hourly);
  return ` now ${usd(lo, 2)}${hi > lo ? "-" + usd(hi, 2) : ""}/h on ${p.gpus.length} GPU type(s)`;
}

function compare(a) {
  const where = d => `${d.target}${d.provider_id ? " (" + d.provider_id + (d.gpu ? " " + d.gpu : "") + ")" : ""}`;
  const row = (name, f) => ({ cells: [name, f(a.recorded), f(a.new)] });
  return el("div", {},
    el("p", { id: "wwc-verdict" }, el("strong", {}, a.changed ? "Changes: " : "Same decision: "),
      `${a.recorded.rule} -> ${where(a.recorded)} becomes `, el("strong", { id: "wwc-new-rule" }, a.new.rule), ` -> ${where(a.new)}`,
      a.cost_difference_usd === null ? "." : ` (${a.cost_difference_usd >= 0 ? "+" : ""}${usd(a.cost_difference_usd)}).`),
    table("Recorded vs with these numbers", ["", "recorded", "with these numbers"], [
      row("target", where), row("rule", d => d.rule),
      row("estimate", d => `${num(d.estimated_minutes, 2, " min")}, ${usd(d.estimate_usd)}`),
      row("reason", d => d.reason)], { id: "wwc-compare" }),
    el("p", { class: "muted" }, `config ${a.recorded_config_digest} -> ${a.config_digest}; nothing recorded (dry run)`));
}
