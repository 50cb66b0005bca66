// perfscope serve: the run history (/api/runs, refreshed every 5 s so that new
// runs appear without a reload), a run's page (#run=ID: its figures and charts
// from /api/run, its request rows a page at a time from /api/rows), comparisons
// (#compare=A,B: /api/compare) and, with --allow-run, the run form (#start).
"use strict";

const fmt = (v, dp) => (v === null || v === undefined || v === "") ? "–" : Number(v).toFixed(dp);
const el = (tag, s, cls) => {
  const e = document.createElement(tag);
  if (s !== undefined && s !== null) e.textContent = s;
  if (cls) e.className = cls;
  return e;
};
const $ = id => document.getElementById(id);

// The --allow-run token arrives in the address's fragment (#token=…), which the
// browser never sends; it is kept for this tab only.
{
  const h = new URLSearchParams(location.hash.slice(1));
  if (h.has("token")) {
    sessionStorage.setItem("perfscope-token", h.get("token"));
    h.delete("token");
    const rest = h.toString().replace(/=$/, "").replace(/=&/g, "&");
    history.replaceState(null, "", location.pathname + (rest ? "#" + rest : ""));
  }
}
const token = () => sessionStorage.getItem("perfscope-token") || "";
const authed = (init) => Object.assign(init || {}, { headers: Object.assign({ Authorization: "Bearer " + token() }, (init || {}).headers) });

let query = "";
const ticked = [];

// ---- history -------------------------------------------------------------

async function loadRuns() {
  const r = await fetch("/api/runs?q=" + encodeURIComponent(query));
  if (!r.ok) return;
  const runs = await r.json();
  $("runs").tBodies[0].replaceChildren(...runs.map(row));
  $("count").textContent = runs.length + (runs.length === 1 ? " run" : " runs");
}

function row(e) {
  const tr = document.createElement("tr");
  tr.dataset.id = e.id;
  if (e.problem) { tr.className = "unreadable"; tr.title = "unreadable: " + e.problem; }
  const tick = document.createElement("input");
  tick.type = "checkbox";
  tick.checked = ticked.includes(e.id);
  tick.addEventListener("click", ev => {
    ev.stopPropagation();
    const i = ticked.indexOf(e.id);
    if (tick.checked && i < 0) ticked.push(e.id);
    if (!tick.checked && i >= 0) ticked.splice(i, 1);
    $("compare").disabled = ticked.length < 2;
  });
  const tc = el("td"); tc.append(tick);
  const started = e.started_unix ? new Date(e.started_unix * 1000).toLocaleString() : "–";
  const tool = el("td"); tool.append(el("span", e.tool || "?", "tool " + (e.tool || "")));
  tr.append(tc, el("td", started), el("td", e.name), tool, el("td", e.model), el("td", e.api), el("td", e.dataset),
    el("td", e.endpoint), el("td", String(e.steps), "num"), el("td", fmt(e.best_rps, 2), "num"),
    el("td", fmt(e.lowest_latency_s, 3), "num"),
    el("td", e.success_rate === null ? "–" : fmt(e.success_rate, 1) + " %", "num"),
    el("td", e.running ? "running" : (e.problem ? "unreadable: " + e.problem : ""), "note"));
  tr.addEventListener("click", () => { location.hash = "run=" + encodeURIComponent(e.id); });
  return tr;
}

// ---- a run ---------------------------------------------------------------

const SWEEP_KEYS = ["Total Requests", "Success Requests", "Req Throughput (req/s)", "Output Throughput (tok/s)",
  "Avg Latency (s)", "Avg TTFT (ms)", "Avg TPOT (ms)", "Avg ITL (ms)", "Failed Requests"];
// In stored order, Next asks for the rows after the page's last rowid (a seek, however
// deep); `afters` remembers each visited page's starting point for Previous.
const rowsState = { id: "", step: "", page: 0, sort: "", desc: false, filter: "", trace: "", per: 50, afters: [null], last: null };

async function showRun(id, trace, step) {
  const r = await fetch("/api/run?id=" + encodeURIComponent(id));
  if (!r.ok) {
    $("run-title").textContent = id;
    $("run-problem").hidden = false;
    $("run-problem").textContent = await r.text();
    for (const x of ["sweep", "charts", "steps"]) $(x).replaceChildren();
    return;
  }
  const run = await r.json();
  const e = run.entry;
  $("run-title").textContent = e.name + " (" + (e.model || "?") + ")";
  $("run-meta").textContent = [e.tool, e.api, e.endpoint, e.dataset].filter(Boolean).join(" · ");
  $("run-problem").hidden = !e.problem;
  $("run-problem").textContent = e.problem ? "Unreadable in part: " + e.problem : "";
  $("sweep").replaceChildren(sweepTable(run.steps));
  // The report's own SVG, drawn by the server from the run's figures.
  const charts = $("charts");
  charts.replaceChildren();
  for (const svg of run.charts) charts.insertAdjacentHTML("beforeend", svg);
  charts.dataset.charts = run.charts.length;
  $("steps").replaceChildren(...run.steps.map(stepTables));
  const sel = $("rows-step");
  sel.replaceChildren(...run.steps.map(s => { const o = el("option", s.name); o.value = s.name; return o; }));
  Object.assign(rowsState, { id, step: step || (run.steps[0] ? run.steps[0].name : ""), page: 0, trace: trace || "", filter: "" });
  sel.value = rowsState.step;
  $("rows-trace").value = rowsState.trace;
  $("rows-filter").value = "";
  loadRows();
}

function sweepTable(steps) {
  const t = el("table");
  const head = el("tr");
  head.append(el("th", "Step"), ...SWEEP_KEYS.map(k => el("th", k, "num")));
  t.append(head);
  for (const s of steps) {
    const tr = el("tr");
    tr.append(el("td", s.name));
    if (!s.summary) { const td = el("td", s.problem, "note"); td.colSpan = SWEEP_KEYS.length; tr.append(td); }
    else tr.append(...SWEEP_KEYS.map(k => el("td", s.summary[k] === undefined ? "–" : String(s.summary[k]), "num")));
    t.append(tr);
  }
  return t;
}

function stepTables(s) {
  const div = el("div");
  div.append(el("h3", s.name));
  if (s.problem) { div.append(el("p", s.problem, "problem")); return div; }
  const wrap = el("div", null, "tables");
  // The percentile table, as benchmark_percentile.json.
  if (Array.isArray(s.percentiles) && s.percentiles.length) {
    const t = el("table");
    t.className = "percentiles";
    const keys = Object.keys(s.percentiles[0]);
    const h = el("tr"); h.append(...keys.map(k => el("th", k, k === "Percentiles" ? "" : "num"))); t.append(h);
    for (const p of s.percentiles) {
      const tr = el("tr");
      tr.append(...keys.map(k => el("td", p[k] === null ? "NaN" : String(p[k]), k === "Percentiles" ? "" : "num")));
      t.append(tr);
    }
    wrap.append(t);
  }
  // The workload windows (Overall / Last 30 s / Steady).
  if (s.windows && Array.isArray(s.windows.rows)) {
    const t = el("table");
    const h = el("tr");
    h.append(el("th", "Throughput"), el("th", "Overall", "num"), el("th", "Last " + s.windows.last_window_s + " s", "num"), el("th", "Steady", "num"));
    t.append(h);
    for (const w of s.windows.rows) {
      const tr = el("tr");
      tr.append(el("td", w.metric), el("td", fmt(w.overall, 1), "num"), el("td", fmt(w.last_window, 1), "num"), el("td", fmt(w.steady_state, 1), "num"));
      t.append(tr);
    }
    wrap.append(t);
  }
  // Failures by kind: each filters the rows below.
  const kinds = s.summary["Failures by Kind"] || {};
  if (Object.keys(kinds).length) {
    const t = el("table");
    const h = el("tr"); h.append(el("th", "Failure kind"), el("th", "Requests", "num")); t.append(h);
    for (const [k, n] of Object.entries(kinds)) {
      const tr = el("tr");
      const a = el("a", k); a.href = "#"; a.addEventListener("click", ev => {
        ev.preventDefault();
        Object.assign(rowsState, { step: s.name, filter: k, page: 0 });
        $("rows-step").value = s.name; ensureOption($("rows-filter"), k); $("rows-filter").value = k; loadRows();
      });
      const td = el("td"); td.append(a);
      tr.append(td, el("td", String(n), "num"));
      t.append(tr);
    }
    wrap.append(t);
  }
  div.append(wrap);
  return div;
}

function ensureOption(sel, v) {
  if (![...sel.options].some(o => o.value === v)) { const o = el("option", v); o.value = v; sel.append(o); }
}

const ROW_COLS = [
  ["seq", "#", null], ["start_time", "Start (s)", "start_time"], ["success", "OK", null],
  ["http_status", "HTTP", "http_status"], ["failure_kind", "Kind", null],
  ["first_chunk_latency", "TTFT (ms)", "first_chunk_latency"], ["time_per_output_token", "TPOT (ms)", "time_per_output_token"],
  ["latency", "Latency (s)", "latency"], ["prompt_tokens", "In", "prompt_tokens"],
  ["completion_tokens", "Out", "completion_tokens"], ["trace_id", "Trace id", null], ["error", "Error", null],
];

async function loadRows() {
  const s = rowsState;
  const p = new URLSearchParams({ id: s.id, step: s.step, per_page: s.per });
  if (s.page === 0) s.afters = [null];
  const after = s.afters[s.page];
  if (!s.sort && after !== null && after !== undefined) p.set("after", after); else p.set("page", s.page);
  if (s.sort) { p.set("sort", s.sort); if (s.desc) p.set("desc", "1"); }
  if (s.filter) p.set("filter", s.filter);
  if (s.trace) p.set("trace", s.trace);
  const r = await fetch("/api/rows?" + p);
  const table = $("rows");
  if (!r.ok) {
    $("rows-problem").hidden = false;
    $("rows-problem").textContent = await r.text();
    table.tBodies[0].replaceChildren();
    return;
  }
  $("rows-problem").hidden = true;
  const page = await r.json();
  s.last = page.rows.length ? page.rows[page.rows.length - 1].rowid : null;
  const head = el("tr");
  for (const [, label, sortKey] of ROW_COLS) {
    const th = el("th", label + (s.sort && s.sort === sortKey ? (s.desc ? " ↓" : " ↑") : ""));
    if (sortKey) {
      th.className = "sort";
      th.addEventListener("click", () => {
        if (s.sort === sortKey) s.desc = !s.desc; else { s.sort = sortKey; s.desc = true; }
        s.page = 0; loadRows();
      });
    }
    head.append(th);
  }
  table.tHead.replaceChildren(head);
  table.tBodies[0].replaceChildren(...page.rows.map(rw => {
    const tr = el("tr");
    if (rw.success === 0) tr.className = "failed";
    if (s.trace && rw.trace_id === s.trace) tr.className = "hit";
    for (const [key] of ROW_COLS) {
      let v = rw[key];
      if (key === "first_chunk_latency" || key === "time_per_output_token") v = v === null ? "–" : (v * 1000).toFixed(2);
      else if (key === "latency" || key === "start_time") v = v === null ? "–" : Number(v).toFixed(3);
      else if (key === "success") v = v === 1 ? "✓" : "✗";
      else v = v === null || v === undefined ? "" : String(v);
      const td = el("td", v, key === "error" ? "err" : (typeof rw[key] === "number" ? "num" : ""));
      if (key === "error") td.title = v;
      tr.append(td);
    }
    return tr;
  }));
  const first = s.page * page.per_page;
  $("rows-where").textContent = page.rows.length ? `rows ${first + 1}–${first + page.rows.length}` : "no rows";
  $("rows-prev").disabled = s.page === 0;
  $("rows-next").disabled = !page.more;
}

// ---- compare -------------------------------------------------------------

async function showCompare(ids) {
  $("cmp").replaceChildren();
  $("cmp-status").textContent = "Comparing (bootstrap resampling of every run's rows)…";
  const p = new URLSearchParams();
  for (const id of ids) p.append("id", id);
  const r = await fetch("/api/compare?" + p);
  if (!r.ok) { $("cmp-status").textContent = await r.text(); return; }
  const res = await r.json();
  $("cmp-status").textContent = "Base: " + res.base;
  for (const a of res.against) {
    const div = el("div");
    div.append(el("h3", "Against " + a.id));
    if (a.problem) { div.append(el("p", a.problem, "problem")); $("cmp").append(div); continue; }
    const c = a.comparison;
    div.append(el("p", `${c.resamples} resamples, ${(c.confidence * 100).toFixed(0)} % intervals, smallest effect ${c.min_effect_pct} %`, "muted"));
    for (const pt of c.points) {
      div.append(el("h3", pt.name + ` (${pt.base_requests} vs ${pt.new_requests} requests)`));
      for (const n of pt.notes) div.append(el("p", n, "muted"));
      const t = el("table");
      const h = el("tr");
      h.append(el("th", "Figure"), el("th", "Base", "num"), el("th", "New", "num"), el("th", "Change", "num"), el("th", "Interval", "num"), el("th", "Verdict"));
      t.append(h);
      for (const rw of pt.rows) {
        const tr = el("tr");
        const ci = (rw.ci_low_pct === null || rw.ci_low_pct === undefined) ? "–" : `[${fmt(rw.ci_low_pct, 1)}, ${fmt(rw.ci_high_pct, 1)}] %`;
        tr.append(el("td", rw.metric + (rw.unit ? " (" + rw.unit + ")" : "")), el("td", fmt(rw.base, 4), "num"), el("td", fmt(rw.new, 4), "num"),
          el("td", rw.delta_pct === null ? "–" : fmt(rw.delta_pct, 1) + " %", "num"), el("td", ci, "num"),
          el("td", String(rw.verdict).replace(/_/g, " "), String(rw.verdict)));
        t.append(tr);
      }
      div.append(t);
    }
    $("cmp").append(div);
  }
}

// ---- start and stop runs (--allow-run) -----------------------------------

async function loadJobs() {
  const r = await fetch("/api/jobs", authed());
  if (!r.ok) { $("start-problem").hidden = false; $("start-problem").textContent = await r.text(); return; }
  const jobs = await r.json();
  $("jobs").replaceChildren(...jobs.map(j => {
    const d = el("div");
    const line = el("p");
    line.append(el("strong", "#" + j.n + " "), el("span", j.running ? "running " : "ended (exit " + j.exit + ") "));
    if (j.running && j.live) { const a = el("a", "live page"); a.href = j.live; a.target = "_blank"; line.append(a, el("span", " ")); }
    if (j.running) {
      const b = el("button", "Stop");
      b.addEventListener("click", async () => { await fetch("/api/jobs/stop?n=" + j.n, authed({ method: "POST" })); loadJobs(); });
      line.append(b);
    }
    d.append(line, el("code", "perfscope " + j.args.join(" ")), el("pre", j.output, "out"));
    return d;
  }));
}

async function startRun(ev) {
  ev.preventDefault();
  const form = Object.fromEntries(new FormData($("run-form")).entries());
  const r = await fetch("/api/jobs", authed({ method: "POST", body: JSON.stringify(form), headers: { "Content-Type": "application/json" } }));
  $("start-problem").hidden = r.ok;
  if (!r.ok) $("start-problem").textContent = await r.text();
  loadJobs();
}

// ---- views ---------------------------------------------------------------

function route() {
  const h = new URLSearchParams(location.hash.slice(1));
  const show = name => { for (const s of ["history", "run", "comparison", "start"]) $(s).hidden = s !== name; };
  if (h.has("run")) { show("run"); showRun(h.get("run"), h.get("trace"), h.get("step")); }
  else if (h.has("compare")) { show("comparison"); showCompare(h.get("compare").split(",")); }
  else if (h.has("start")) { show("start"); loadJobs(); }
  else show("history");
}

document.addEventListener("DOMContentLoaded", async () => {
  const search = $("search");
  let timer = null;
  search.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(() => { query = search.value; loadRuns(); if (location.hash) location.hash = ""; }, 200);
  });
  $("compare").addEventListener("click", () => { location.hash = "compare=" + ticked.map(encodeURIComponent).join(","); });
  $("rows-step").addEventListener("change", ev => { rowsState.step = ev.target.value; rowsState.page = 0; loadRows(); });
  $("rows-filter").addEventListener("change", ev => { rowsState.filter = ev.target.value; rowsState.page = 0; loadRows(); });
  $("rows-trace").addEventListener("change", ev => { rowsState.trace = ev.target.value.trim(); rowsState.page = 0; loadRows(); });
  $("rows-prev").addEventListener("click", () => { rowsState.page = Math.max(0, rowsState.page - 1); loadRows(); });
  $("rows-next").addEventListener("click", () => {
    rowsState.afters[rowsState.page + 1] = rowsState.last;
    rowsState.page += 1;
    loadRows();
  });
  $("run-form").addEventListener("submit", startRun);
  const cfg = await (await fetch("/api/config")).json();
  $("nav-start").hidden = !cfg.allow_run;
  window.addEventListener("hashchange", route);
  route();
  loadRuns();
  setInterval(() => { if (!$("history").hidden) loadRuns(); }, 5000);
  setInterval(() => { if (!$("start").hidden) loadJobs(); }, 2000);
});
