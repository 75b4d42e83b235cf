// The dashboard's only way to the gateway: its public REST routes and the
// modder-hooks WebSocket, with the bearer token when the gateway has one.

const TOKEN_KEY = "gpuroute.token";
let tokenWaiters = null;

export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

function token() { return sessionStorage.getItem(TOKEN_KEY); }

function askToken(again) {
  // One dialog for every call that met a 401 at the same time; the token is
  // asked once per tab and kept in sessionStorage (never sent elsewhere).
  if (tokenWaiters) return new Promise(resolve => tokenWaiters.push(resolve));
  tokenWaiters = [];
  const dialog = document.getElementById("token-dialog");
  const input = document.getElementById("token-input");
  document.getElementById("token-error").textContent = again ? "That token was refused." : "";
  return new Promise(resolve => {
    const done = () => {
      sessionStorage.setItem(TOKEN_KEY, input.value.trim());
      input.value = "";
      dialog.close();
      const waiting = tokenWaiters;
      tokenWaiters = null;
      resolve();
      waiting.forEach(w => w());
    };
    document.getElementById("token-form").onsubmit = e => { e.preventDefault(); done(); };
    dialog.showModal();
  });
}

export async function api(method, path, body, opts = {}) {
  // The answer's JSON; an ApiError with the gateway's ``error`` sentence otherwise.
  for (let attempt = 0; ; attempt++) {
    const headers = { Accept: "application/json" };
    const t = token();
    if (t) headers.Authorization = `Bearer ${t}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let r;
    try {
      r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body),
                              signal: AbortSignal.timeout(opts.timeout_ms || 20000) });
    } catch (e) {
      throw new ApiError(0, `the gateway cannot be reached (${e.message})`, null);
    }
    if (r.status === 401 && attempt < 3 && !opts.noToken) {
      if (t) sessionStorage.removeItem(TOKEN_KEY);
      await askToken(Boolean(t));
      continue;
    }
    const text = await r.text();
    let doc = null;
    try { doc = text ? JSON.parse(text) : null; } catch { doc = null; }
    if (!r.ok && !(opts.accept || []).includes(r.status)) {
      const said = doc && typeof doc.error === "string" ? doc.error : text.slice(0, 300);
      throw new ApiError(r.status, `${method} ${path}: ${r.status} ${said}`, doc);
    }
    return doc;
  }
}

let openapi = null;
export async function document_() {
  // The OpenAPI document: which routes this gateway has, and the schemas the
  // settings forms validate against.
  if (!openapi) openapi = await api("GET", "/openapi.json");
  return openapi;
}

export async function hasRoute(method, path) {
  const doc = await document_();
  return Boolean(doc.paths[path] && doc.paths[path][method.toLowerCase()]);
}

export function schemaOf(doc, schema) {
  // ``schema`` with its $ref followed (one level at a time, as the forms walk it).
  let s = schema;
  for (let i = 0; s && s.$ref && i < 20; i++) s = doc.components.schemas[s.$ref.split("/").pop()];
  return s;
}

export class Live {
  // Stored-then-live events over /api/modder/hooks/ws. ``last`` is the newest
  // store position handed on; a reconnect (gateway restart, network, "too slow")
  // resumes with after=last, and a frame at or before ``last`` is dropped, so
  // no event is missed or handed on twice.
  constructor(after, onEvent, onState) {
    this.last = after;
    this.onEvent = onEvent;
    this.onState = onState;
    this.delay = 250;
    this.ws = null;
    this.connect();
  }

  connect() {
    const url = new URL("/api/modder/hooks/ws", location.href);
    url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    url.searchParams.set("subjects", ">");
    url.searchParams.set("after", String(this.last));
    const t = token();
    if (t) url.searchParams.set("access_token", t);
    const ws = new WebSocket(url);
    this.ws = ws;
    ws.onopen = () => { this.delay = 250; this.onState(true, ""); };
    ws.onmessage = m => this.frame(m.data);
    ws.onclose = e => {
      if (this.ws !== ws) return;
      this.onState(false, e.reason || `closed (${e.code})`);
      const wait = e.code === 4008 ? 0 : this.delay;  // too slow: at once, from `last`
      this.delay = Math.min(this.delay * 2, 5000);
      setTimeout(() => this.reconnect(), wait);
    };
  }

  async reconnect() {
    if (token() === null) {
      // a 401 handshake looks like any close: ask the API whether a token is needed
      try { await api("GET", "/api/events?limit=1"); } catch { /* down: retry below */ }
    }
    this.connect();
  }

  frame(data) {
    let msg;
    try { msg = JSON.parse(data); } catch { return; }
    if (msg.ok === false) { this.onState(false, msg.error); return; }
    if (typeof msg.seq !== "number" || msg.seq <= this.last) return;
    this.last = msg.seq;
    this.onEvent(msg.seq, msg.event);
  }
}
