// The live page: one event a second from /live/events (server-sent events; the
// browser reconnects by itself), drawn as cards and charts over time. It keeps
// working across the sweep's points: the stage is part of every event.
"use strict";

const $ = id => document.getElementById(id);
const KEEP = 900; // seconds of history drawn
const hist = [];
let lastStage = null;
const stageStarts = [];

const fmtNum = (v, dp) => (v === null || v === undefined || !Number.isFinite(v)) ? "–" : v.toFixed(dp);
const fmtEta = s => {
  if (s === null || s === undefined || !Number.isFinite(s)) return "–";
  if (s < 60) return s.toFixed(0) + " s";
  if (s < 3600) return Math.floor(s / 60) + " min " + Math.round(s % 60) + " s";
  return Math.floor(s / 3600) + " h " + Math.round((s % 3600) / 60) + " min";
};

function rowLink(ev, stage, trace) {
  const p = new URLSearchParams({ run: ev.run_id, step: stage || "", trace });
  return "/history#" + p.toString();
}

function series(name, key, q, scale) {
  return {
    name,
    points: hist.map(e => {
      const w = e.percentiles[key];
      if (!w) return [e.t, NaN];
      const link = q === "p99" && w.exemplar ? rowLink(e, e.stage, w.exemplar.trace_id) : null;
      return [e.t, w[q] * scale, link];
    }),
  };
}

function draw() {
  const charts = [
    lineChart("Request rate", "req/s", [
      { name: "finished/s", points: hist.map(e => [e.t, e.rate]) },
      { name: "in flight", points: hist.map(e => [e.t, e.in_flight]) },
    ]),
    lineChart("TTFT", "ms", [series("p50", "ttft", "p50", 1000), series("p90", "ttft", "p90", 1000), series("p99", "ttft", "p99", 1000)]),
    lineChart("ITL", "ms", [series("p50", "itl", "p50", 1000), series("p90", "itl", "p90", 1000), series("p99", "itl", "p99", 1000)]),
    lineChart("Latency", "s", [series("p50", "latency", "p50", 1), series("p90", "latency", "p90", 1), series("p99", "latency", "p99", 1)]),
  ];
  if (hist.some(e => e.server.running !== null || e.server.waiting !== null)) {
    charts.push(lineChart("Server (scraped)", "requests", [
      { name: "running", points: hist.map(e => [e.t, e.server.running === null ? NaN : e.server.running]) },
      { name: "waiting", points: hist.map(e => [e.t, e.server.waiting === null ? NaN : e.server.waiting]) },
    ]));
  }
  $("charts").replaceChildren(...charts);
  $("charts").dataset.charts = charts.length;
}

function show(ev) {
  hist.push(ev);
  while (hist.length > KEEP) hist.shift();
  if (ev.stage !== lastStage) { stageStarts.push([ev.t, ev.stage]); lastStage = ev.stage; }
  $("stage").textContent = ev.stage ? "stage " + ev.stage : "waiting for the first request";
  $("stage").dataset.stage = ev.stage || "";
  $("done").textContent = ev.planned ? `${ev.done} / ${ev.planned}` : String(ev.done);
  $("done").dataset.done = ev.done;
  $("progress").style.width = ev.planned ? Math.min(100, 100 * ev.done / ev.planned).toFixed(1) + "%" : "0";
  $("eta").textContent = fmtEta(ev.eta_s);
  $("rate").textContent = fmtNum(ev.rate, 1);
  $("inflight").textContent = fmtNum(ev.in_flight, 0);
  const failed = Object.values(ev.failures).reduce((a, b) => a + b, 0);
  $("failed").textContent = String(failed);
  const s = ev.server;
  $("server").textContent = (s.running === null && s.waiting === null) ? "–" : `${fmtNum(s.running, 0)} / ${fmtNum(s.waiting, 0)}`;
  const d = ev.drift || {};
  $("drift").textContent = `${fmtNum(d.ttft, 2)}, ${fmtNum(d.tpot, 2)}`;
  // A window drifts when its p50 is off the steady state's by more than
  // --drift-threshold (the run's; shown only when it keeps windows).
  const limit = ev.drift_threshold;
  const drifting = limit === null ? [] : Object.entries(d).filter(([, r]) => Number.isFinite(r) && Math.abs(r - 1) > limit);
  $("drift-note").hidden = drifting.length === 0;
  $("drift-note").textContent = drifting.length
    ? "Drifting: " + drifting.map(([m, r]) => `${m.toUpperCase()} p50 is ${r.toFixed(2)}× the steady state`).join("; ")
    : "";
  const rows = Object.entries(ev.failures).map(([k, n]) => {
    const tr = document.createElement("tr");
    const a = document.createElement("td"); a.textContent = k || "(unknown)";
    const b = document.createElement("td"); b.textContent = String(n); b.className = "num";
    tr.append(a, b);
    return tr;
  });
  if (rows.length) $("failures").tBodies[0].replaceChildren(...rows);
  draw();
}

// `?updates=N` stops after N updates (a still picture: a screenshot, a page saved
// for a report); without it the page follows the run until it is closed.
document.addEventListener("DOMContentLoaded", () => {
  const limit = Number(new URLSearchParams(location.search).get("updates")) || 0;
  const src = new EventSource("/live/events");
  let seen = 0;
  src.onopen = () => $("dot").classList.add("on");
  src.onerror = () => $("dot").classList.remove("on");
  src.onmessage = m => {
    const ev = JSON.parse(m.data);
    if (seen === 0) $("done").dataset.first = ev.done;
    seen += 1;
    show(ev);
    if (limit && seen >= limit) { src.close(); $("dot").classList.remove("on"); document.body.dataset.updates = seen; }
  };
});
