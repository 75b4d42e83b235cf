// The dashboard's entry: loads every panel, follows live events and sends
// each to the panels that care, and routes #job/<id> to a job's page.
import { api, Live } from "./api.js";
import { debounce, replace } from "./dom.js";
import { budgets, cloud, gpus, jobs, services, tail } from "./panels.js";
import { job } from "./job.js";
import { settings } from "./settings.js";

const REFRESH_MS = 250;
const POLL_MS = 5000;

const refreshers = new Map();
function refresher(panel) {
  // Many events in a burst are one read of the panel's route, at most every REFRESH_MS.
  if (!refreshers.has(panel)) refreshers.set(panel, debounce(() => safely(panel), REFRESH_MS));
  return refreshers.get(panel);
}

async function safely(panel) {
  try { await panel.refresh(); } catch (e) { console.warn("panel refresh", e); }
}

function onEvent(seq, ev) {
  tail.event(seq, ev);
  gpus.event(ev);
  for (const panel of [jobs, budgets, cloud, settings]) if (panel.interested(ev)) refresher(panel)();
  if (job.interested(ev)) refresher(job)();
  replace("position", `Store position ${seq}.`);
}

let opened = 0;
function onState(up, why) {
  const badge = document.getElementById("live");
  badge.className = up ? "live on" : "live off";
  badge.textContent = up ? "live" : `reconnecting${why ? ": " + why : ""}`;
  // back after a break: what has no event (heartbeats, a pod's cost) is read again
  if (up && opened++) for (const panel of [gpus, budgets, cloud, services, settings]) refresher(panel)();
}

function route() {
  const m = /^#job\/(.+)$/.exec(location.hash);
  document.getElementById("overview").hidden = Boolean(m);
  document.getElementById("job").hidden = !m;
  if (m) {
    job.hide();
    job.show(decodeURIComponent(m[1]));
    document.getElementById("main").focus();
  } else {
    job.hide();
  }
}

async function start() {
  window.addEventListener("hashchange", route);
  tail.init();
  await jobs.init().catch(e => console.warn("jobs init", e));
  // the newest events for the tail, and the position live events follow from
  let after = 0;
  try {
    const page = await api("GET", "/api/events?last=true&limit=100");
    page.events.forEach(s => tail.event(s.seq, s.event));
    after = page.events.length ? page.events[page.events.length - 1].seq : page.last_seq;
  } catch (e) { replace("events-body", e.message); }
  route();
  await Promise.all([jobs, gpus, budgets, cloud, services, settings].map(safely));
  new Live(after, onEvent, onState);
  setInterval(() => {
    safely(services);  // heartbeats are not events: read /health
    if (cloud.active) safely(cloud);  // a running pod's cost grows between events
    if (document.getElementById("jobs-table")) safely(jobs);  // ages
  }, POLL_MS);
  document.body.dataset.ready = "true";
}

start();
