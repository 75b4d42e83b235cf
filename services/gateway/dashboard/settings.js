// Settings an operator changes by hand: feature flags (each toggle one PUT
// /api/flags), provider profiles (forms validated against the OpenAPI schema
// before sending), and each adapter's readiness with a sample secrets file.
import { api, document_, schemaOf } from "./api.js";
import { down } from "./panels.js";
import { badge, el, replace } from "./dom.js";

export const settings = {
  async refresh() {
    const parts = await Promise.all([flags(), providers(), adapters()]);
    replace("settings-body", el("div", { class: "grid2" }, parts));
  },
  interested(ev) { return ev.type === "flags.changed" || ev.type.startsWith("provider."); },
};

function box(id, title, ...content) {
  return el("div", { id }, el("h3", {}, title), content);
}

async function guarded(id, what, fn) {
  const holder = el("div");
  try { return await fn(); } catch (e) { down(holder, what, e); return box(id, what, holder); }
}

function flags() {
  return guarded("flags", "Feature flags", async () => {
    const view = await api("GET", "/api/flags");
    const rows = Object.keys(view.flags).sort().map(name => {
      const input = el("input", { type: "checkbox", id: `flag-${name}`, checked: view.flags[name],
                                  "aria-describedby": `flag-${name}-d` });
      input.addEventListener("change", async () => {
        input.disabled = true;
        try { await api("PUT", "/api/flags", { flags: { [name]: input.checked } }); }
        catch (e) { input.checked = !input.checked; alertIn(`flag-${name}-d`, e.message); }
        finally { input.disabled = false; }
      });
      return el("div", { class: "flag" }, input,
        el("label", { for: `flag-${name}` }, el("code", {}, name)),
        el("span", { id: `flag-${name}-d`, class: "muted" },
          view.descriptions[name] || "", view.flags[name] !== view.defaults[name] ? " (changed from default)" : ""));
    });
    return box("flags", "Feature flags", rows);
  });
}

function alertIn(id, text) {
  const node = document.getElementById(id);
  if (node) node.append(el("span", { class: "error", role: "alert" }, ` ${text}`));
}

// -- schema-driven validation ---------------------------------------------------------

export function validate(doc, schema, value, path = "$") {
  // The first problem of ``value`` against a JSON Schema of the OpenAPI document
  // (the subset msgspec writes: type, enum, const, bounds, lengths, pattern,
  // anyOf, $ref, items, required, additionalProperties false), or null.
  const s = schemaOf(doc, schema);
  if (!s) return null;
  if (s.anyOf) {
    const errors = s.anyOf.map(alt => validate(doc, alt, value, path));
    return errors.includes(null) ? null : errors[0];
  }
  if (s.enum && !s.enum.includes(value)) return `${path}: must be one of ${s.enum.join(", ")}`;
  if ("const" in s && value !== s.const) return `${path}: must be ${JSON.stringify(s.const)}`;
  const type = s.type;
  if (type === "null") return value === null ? null : `${path}: must be empty`;
  if (type === "boolean" && typeof value !== "boolean") return `${path}: must be true or false`;
  if ((type === "number" || type === "integer")) {
    if (typeof value !== "number" || !isFinite(value)) return `${path}: must be a number`;
    if (type === "integer" && !Number.isInteger(value)) return `${path}: must be a whole number`;
    if ("minimum" in s && value < s.minimum) return `${path}: must be >= ${s.minimum}`;
    if ("maximum" in s && value > s.maximum) return `${path}: must be <= ${s.maximum}`;
    if ("exclusiveMinimum" in s && value <= s.exclusiveMinimum) return `${path}: must be > ${s.exclusiveMinimum}`;
    if ("exclusiveMaximum" in s && value >= s.exclusiveMaximum) return `${path}: must be < ${s.exclusiveMaximum}`;
  }
  if (type === "string") {
    if (typeof value !== "string") return `${path}: must be text`;
    if ("minLength" in s && value.length < s.minLength) return `${path}: at least ${s.minLength} characters`;
    if ("maxLength" in s && value.length > s.maxLength) return `${path}: at most ${s.maxLength} characters`;
    if (s.pattern && !new RegExp(s.pattern, "u").test(value)) return `${path}: must match ${s.pattern}`;
  }
  if (type === "array") {
    if (!Array.isArray(value)) return `${path}: must be a list`;
    if ("minItems" in s && value.length < s.minItems) return `${path}: at least ${s.minItems} item(s)`;
    if ("maxItems" in s && value.length > s.maxItems) return `${path}: at most ${s.maxItems} items`;
    for (let i = 0; i < value.length; i++) {
      const e = validate(doc, s.items || (s.prefixItems || [])[i], value[i], `${path}[${i}]`);
      if (e) return e;
    }
  }
  if (type === "object") {
    if (typeof value !== "object" || value === null || Array.isArray(value)) return `${path}: must be an object`;
    for (const r of s.required || []) if (!(r in value)) return `${path}.${r}: required`;
    for (const [k, v] of Object.entries(value)) {
      const sub = (s.properties || {})[k];
      if (!sub) { if (s.additionalProperties === false) return `${path}.${k}: unknown field`; continue; }
      const e = validate(doc, sub, v, `${path}.${k}`);
      if (e) return e;
    }
  }
  return null;
}

function scalarType(doc, schema) {
  const s = schemaOf(doc, schema);
  if (!s) return null;
  if (s.anyOf) return s.anyOf.map(a => scalarType(doc, a)).find(t => t && t !== "null") || null;
  if (s.enum) return "enum";
  return ["string", "number", "integer", "boolean"].includes(s.type) ? s.type : null;
}

function enumOf(doc, schema) {
  const s = schemaOf(doc, schema);
  return s.enum || (s.anyOf || []).flatMap(a => schemaOf(doc, a).enum || []);
}

export function fieldFor(doc, schema, name, value, path) {
  // One input for a scalar field, validated as it is typed.
  const kind = scalarType(doc, schema);
  const id = `pf-${path.replace(/[^A-Za-z0-9]/g, "-")}`;
  const msg = el("span", { class: "error hint", id: `${id}-e`, role: "alert" });
  let input;
  if (kind === "enum") {
    input = el("select", { id, "data-path": path }, enumOf(doc, schema).map(v => el("option", { value: v, selected: v === value }, v)));
  } else if (kind === "boolean") {
    input = el("input", { id, type: "checkbox", checked: Boolean(value), "data-path": path });
  } else {
    input = el("input", { id, value: value === undefined || value === null ? "" : String(value), "data-path": path,
                          inputmode: kind === "string" ? "text" : "decimal", "aria-describedby": `${id}-e`, size: "14" });
  }
  input.dataset.kind = kind;
  const check = () => {
    const v = read(input);
    const e = v === undefined ? null : validate(doc, schema, v, name);
    msg.textContent = e || "";
    input.setAttribute("aria-invalid", e ? "true" : "false");
    return e;
  };
  input.addEventListener("input", check);
  input.check = check;
  return el("label", { class: "field", for: id }, el("span", {}, name), input, msg);
}

function read(input) {
  const kind = input.dataset.kind;
  if (kind === "boolean") return input.checked;
  const raw = input.value.trim();
  if (raw === "") return undefined;
  if (kind === "number" || kind === "integer") return raw === "" || isNaN(Number(raw)) ? raw : Number(raw);
  return raw;
}

export function formFor(doc, schema, value, path) {
  // Inputs for the scalar fields of an object and, for a list of objects (a
  // provider's GPU offers), a fieldset per item; other fields are kept as they are.
  const s = schemaOf(doc, schema);
  const parts = [];
  for (const [name, sub] of Object.entries(s.properties || {})) {
    const here = `${path}.${name}`;
    const sv = schemaOf(doc, sub);
    if (scalarType(doc, sub)) parts.push(fieldFor(doc, sub, name, value[name], here));
    else if (sv && sv.type === "object") parts.push(el("fieldset", {}, el("legend", {}, name), formFor(doc, sv, value[name] || {}, here)));
    else if (sv && sv.type === "array" && schemaOf(doc, sv.items)?.type === "object" && Array.isArray(value[name])) {
      value[name].forEach((item, i) => parts.push(el("fieldset", {}, el("legend", {}, `${name} ${i + 1}`),
        formFor(doc, sv.items, item, `${here}.${i}`))));
    }
  }
  return parts;
}

export function collect(form, original) {
  const out = structuredClone(original);
  for (const input of form.querySelectorAll("[data-path]")) {
    const keys = input.dataset.path.split(".").slice(1);
    let node = out;
    keys.slice(0, -1).forEach(k => { node = node[k] = node[k] ?? {}; });
    const v = read(input);
    if (v === undefined) delete node[keys[keys.length - 1]];
    else node[keys[keys.length - 1]] = v;
  }
  return out;
}

function providers() {
  return guarded("providers", "Provider profiles", async () => {
    const [doc, list] = await Promise.all([document_(), api("GET", "/api/providers")]);
    const op = doc.paths["/api/providers/{id}"]?.put;
    const schema = op && op.requestBody.content["application/json"].schema;
    const forms = list.providers.map(p => {
      const form = el("form", { class: "provider", "data-provider": p.id, novalidate: true },
        formFor(doc, schema, p, "$"),
        el("button", { type: "submit" }, `Save ${p.id}`), el("span", { class: "result", role: "status" }));
      form.addEventListener("submit", async e => {
        e.preventDefault();
        const result = form.querySelector(".result");
        const problems = [...form.querySelectorAll("[data-path]")].map(i => i.check && i.check()).filter(Boolean);
        const body = collect(form, p);
        const whole = validate(doc, schema, body, "profile");
        if (problems.length || whole) {
          result.textContent = ` Not sent: ${problems[0] || whole}`;
          result.className = "result error";
          return;
        }
        try {
          await api("PUT", `/api/providers/${encodeURIComponent(p.id)}`, body);
          result.textContent = " Saved.";
          result.className = "result";
        } catch (err) { result.textContent = ` ${err.message}`; result.className = "result error"; }
      });
      return el("details", {}, el("summary", {}, `${p.id} (${p.kind}, ${p.gpus.length} GPU type(s), prices of ${p.price_snapshot.date})`), form);
    });
    return box("providers", "Provider profiles", forms.length ? forms : el("p", { class: "muted" }, "No provider registered."));
  });
}

export function sampleSecrets(providersList) {
  // A secrets file with every key the adapters read, each empty: the template,
  // never a value (the API never returns one).
  const lines = ["# gpuroute secrets file (sample): fill in only the providers you use,",
                 "# keep it out of git, name it in [adapters] secrets_file."];
  const tables = new Map();
  for (const p of providersList) {
    for (const key of p.required_secrets) {
      const [t, ...rest] = key.split(".");
      if (!tables.has(t)) tables.set(t, new Set());
      tables.get(t).add(rest.join(".") || key);
    }
  }
  for (const [t, keys] of tables) {
    lines.push("", `[${t}]`);
    for (const k of keys) lines.push(`${k} = ""`);
  }
  return lines.join("\n") + "\n";
}

function adapters() {
  return guarded("adapters", "Adapters", async () => {
    const r = await api("GET", "/api/providers/gpu/providers");
    const template = sampleSecrets(r.providers);
    const area = el("textarea", { class: "template", readonly: true, id: "secrets-template", "aria-label": "sample secrets file" }, template);
    const copied = el("span", { role: "status", class: "muted" });
    const button = el("button", { type: "button", id: "copy-secrets" }, "Copy sample secrets file");
    button.addEventListener("click", async () => {
      try { await navigator.clipboard.writeText(template); copied.textContent = " Copied (no values: a template)."; }
      catch { area.select(); copied.textContent = " Selected: copy it with Ctrl+C."; }
    });
    const rows = r.providers.map(p => el("li", {}, el("strong", {}, p.provider), " ", badge(p.mode), " ",
      p.mode === "live" ? "" : p.reasons.join(", "),
      p.missing_secrets.length ? el("div", { class: "muted" }, `missing secrets: ${p.missing_secrets.join(", ")}`) : null,
      p.missing_settings.length ? el("div", { class: "muted" }, `missing settings: ${p.missing_settings.join(", ")}`) : null,
      p.hint ? el("details", {}, el("summary", {}, "what to do"), el("p", { class: "muted" }, p.hint)) : null));
    return box("adapters", "Adapters",
      el("p", {}, `Live calls ${r.live_calls_enabled ? "on" : "off"} (${r.flag}); secrets file ${r.secrets_file || "(none)"}: ${r.secrets_file_state}.`),
      el("ul", {}, rows), button, copied, el("details", {}, el("summary", {}, "The sample secrets file"), area));
  });
}
