// The run history: fetched from /api/runs, refreshed every 5 s so that new runs
// appear without a reload; a click shows the run's steps (/api/run).
"use strict";

const fmt = (v, dp) => (v === null || v === undefined) ? "–" : Number(v).toFixed(dp);
const text = (tag, s, cls) => {
  const e = document.createElement(tag);
  e.textContent = s;
  if (cls) e.className = cls;
  return e;
};

let query = "";

async function loadRuns() {
  const r = await fetch("/api/runs?q=" + encodeURIComponent(query));
  if (!r.ok) return;
  const runs = await r.json();
  const body = document.querySelector("#runs tbody");
  body.replaceChildren(...runs.map(row));
  document.getElementById("count").textContent = runs.length + (runs.length === 1 ? " run" : " runs");
}

function row(e) {
  const tr = document.createElement("tr");
  tr.dataset.id = e.id;
  if (e.problem) { tr.className = "unreadable"; tr.title = "unreadable: " + e.problem; }
  const started = e.started_unix ? new Date(e.started_unix * 1000).toLocaleString() : "–";
  tr.append(text("td", started), text("td", e.name));
  const tool = document.createElement("td");
  tool.append(text("span", e.tool || "?", "tool " + (e.tool || "")));
  tr.append(tool, text("td", e.model), text("td", e.api), text("td", e.dataset), text("td", e.endpoint),
    text("td", String(e.steps), "num"), text("td", fmt(e.best_rps, 2), "num"),
    text("td", fmt(e.lowest_latency_s, 3), "num"),
    text("td", e.success_rate === null ? "–" : fmt(e.success_rate, 1) + " %", "num"),
    text("td", e.problem ? "unreadable: " + e.problem : "", "note"));
  tr.addEventListener("click", () => showRun(e.id));
  return tr;
}

async function showRun(id) {
  const r = await fetch("/api/run?id=" + encodeURIComponent(id));
  const sec = document.getElementById("run");
  sec.hidden = false;
  if (!r.ok) {
    document.getElementById("run-title").textContent = id;
    const p = document.getElementById("run-problem");
    p.hidden = false;
    p.textContent = await r.text();
    document.getElementById("steps").replaceChildren();
    return;
  }
  const run = await r.json();
  document.getElementById("run-title").textContent = run.entry.name + " (" + run.entry.model + ")";
  const p = document.getElementById("run-problem");
  p.hidden = !run.entry.problem;
  p.textContent = run.entry.problem ? "Unreadable in part: " + run.entry.problem : "";
  document.getElementById("steps").replaceChildren(...run.steps.map(stepTable));
}

function stepTable(s) {
  const div = document.createElement("div");
  div.append(text("h3", s.name));
  if (s.problem) { div.append(text("p", s.problem, "problem")); return div; }
  const t = document.createElement("table");
  for (const [k, v] of Object.entries(s.summary)) {
    if (typeof v === "object") continue;
    const tr = document.createElement("tr");
    tr.append(text("th", k), text("td", String(v), "num"));
    t.append(tr);
  }
  div.append(t);
  return div;
}

document.addEventListener("DOMContentLoaded", () => {
  const search = document.getElementById("search");
  let timer = null;
  search.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(() => { query = search.value; loadRuns(); }, 200);
  });
  loadRuns();
  setInterval(() => { loadRuns(); }, 5000);
});
