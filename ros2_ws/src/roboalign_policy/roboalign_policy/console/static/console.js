// RoboAlign console page: renders the server's state stream, sends actions. No build step, no framework.
"use strict";
const TOKEN = new URLSearchParams(location.search).get("token") || "";
const $ = (id) => document.getElementById(id);
const state = { last: null, estopClick: null, estopLatencyMs: null, cams: new Set() };
window.consoleState = state;

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function fill(table, rows) {  // rows: arrays of cells (the first row of a .grid table is its header)
  table.replaceChildren(...rows.map((r, i) => {
    const tr = el("tr");
    r.forEach((c) => tr.appendChild(el(i === 0 && table.classList.contains("grid") ? "th" : "td", c)));
    return tr;
  }));
}

async function act(name, body) {
  try {
    const r = await fetch(`/api/${name}`, { method: "POST", headers: { "Content-Type": "application/json",
      "X-Console-Token": TOKEN }, body: JSON.stringify(body || {}) });
    const j = await r.json();
    if (!j.ok) alertLine(`${name}: ${j.error}`);
    return j;
  } catch (e) {
    alertLine(`${name}: ${e}`);
    return { ok: false, error: String(e) };
  }
}

function alertLine(text) {
  const li = el("li", `${new Date().toLocaleTimeString()} ${text}`, "error");
  $("actions").prepend(li);
}

// ---------------------------------------------------------------- e-stop: one click, whatever else is going on
// A WebSocket held open from page load carries it (no wait for a free HTTP connection); POST if it is down.
let estopWs = null;
function estopLine() {
  estopWs = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/api/estop_ws` +
                          `?token=${encodeURIComponent(TOKEN)}`);
  estopWs.onmessage = (m) => estopReply(JSON.parse(m.data));
  estopWs.onclose = () => setTimeout(estopLine, 1000);
}
function estopReply(j) {
  if (!j.ok) { alertLine(`e-stop: ${j.error}`); return; }
  if (j.result.action === "e-stop") $("estop-info").textContent += ` (service ${j.result.service_ms} ms)`;
}
function estop(engage) {
  if (estopWs && estopWs.readyState === WebSocket.OPEN) estopWs.send(engage ? "engage" : "release");
  else act("estop", { engage }).then((j) => { if (j.ok) estopReply(j); });
}
$("estop").addEventListener("click", () => {
  state.estopClick = performance.now();
  state.estopLatencyMs = null;
  $("estop-info").textContent = "e-stop sent…";
  estop(true);
});
$("release").addEventListener("click", () => estop(false));
estopLine();

// ---------------------------------------------------------------- commands
$("say").addEventListener("submit", (ev) => {
  ev.preventDefault();
  act("command", { command: "start", instruction: $("instruction").value });
});
$("stop").addEventListener("click", () => act("command", { command: "stop" }));
$("home").addEventListener("click", () => act("command", { command: "home" }));
let completeTimer = null;
$("instruction").addEventListener("input", () => {
  clearTimeout(completeTimer);
  completeTimer = setTimeout(complete, 150);
});
async function complete() {
  const q = $("instruction").value;
  const r = await fetch(`/api/complete?q=${encodeURIComponent(q)}`, { headers: { "X-Console-Token": TOKEN } });
  const j = await r.json();
  $("suggestions").replaceChildren(...j.suggestions.map((s) => { const o = el("option"); o.value = s.instruction; return o; }));
  $("resolve").textContent = j.match ? `→ task ${j.match.task}${j.match.object ? " (" + j.match.object + ")" : ""}`
    : (j.refusal ? `refused: ${j.refusal}` : "");
  $("resolve").className = j.refusal ? "small error" : "small";
}

// ---------------------------------------------------------------- tabs
document.querySelectorAll(".tab").forEach((b) => b.addEventListener("click", () => {
  document.querySelectorAll(".tab").forEach((x) => x.classList.toggle("active", x === b));
  document.querySelectorAll(".panel").forEach((p) => p.classList.toggle("hidden", p.id !== `tab-${b.dataset.tab}`));
}));

// ---------------------------------------------------------------- trials
$("trial-next").addEventListener("click", () => act("trials_next"));
document.querySelectorAll("[data-mark]").forEach((b) => b.addEventListener("click",
  () => act("trials_mark", { verdict: b.dataset.mark })));
$("set-label").addEventListener("click", () => act("trials_label", { label: $("label").value }));
$("add-note").addEventListener("click", () => {
  const t = state.last && state.last.trials;
  const n = t && (t.running || t.last);  // the trial running, else the one that finished last
  if (!n) return alertLine("no trial to note yet");
  act("trials_note", { task: n.task, object: n.object, trial: n.trial, note: $("note").value })
    .then((j) => { if (j.ok) $("note").value = ""; });
});

// ---------------------------------------------------------------- record
$("rec-start").addEventListener("click", () => act("record_start", { source: $("rec-source").value,
  task: $("rec-task").value, object: $("rec-object").value }));
$("rec-done").addEventListener("click", () => act("record_done"));
$("rec-finish").addEventListener("click", () => act("record_finish"));
document.querySelectorAll("[data-verdict]").forEach((b) => b.addEventListener("click",
  () => act("record_verdict", { verdict: b.dataset.verdict })));

// ---------------------------------------------------------------- rendering
function render(s) {
  state.last = s;
  const ep = s.episode || {};
  const phase = ep.phase || "?";
  $("phase").textContent = `phase: ${phase}`;
  $("phase").className = `phase ${phase}`;
  $("episode").textContent = ep.episode === undefined ? "no episode status yet (is the bridge running?)" :
    `episode ${ep.episode} ${ep.task || ""} '${ep.instruction || ""}' t=${ep.elapsed_s}s steps=${ep.steps}` +
    `${ep.init_state >= 0 ? " init state " + ep.init_state : ""}\n${ep.message || ""}`;
  $("dryrun").textContent = ep.dry_run ? "DRY RUN: nothing is sent to the robot" : "dry run: off (commands go out)";
  $("dryrun").classList.toggle("on", !!ep.dry_run);
  if (state.estopClick !== null && phase === "estop") {
    state.estopLatencyMs = performance.now() - state.estopClick;
    state.estopClick = null;
    $("estop-info").textContent = `held: click → bridge e-stop status in ${state.estopLatencyMs.toFixed(0)} ms`;
  }
  renderPolicy(s.policy || {});
  renderCameras(s.cameras || []);
  fill($("diagnostics"), [["name", "level", "message"],
    ...Object.entries(s.diagnostics || {}).map(([n, d]) => [n, d.level, d.message])]);
  [...$("diagnostics").rows].forEach((r, i) => { if (i) r.className = `lvl-${r.cells[1].textContent}`; });
  $("events").replaceChildren(...(s.events || []).slice().reverse().map((e) =>
    el("li", `${new Date(e.time * 1000).toLocaleTimeString()} episode ${e.episode} ${e.phase}: ${e.message}`,
       e.phase === "fault" || e.phase === "estop" ? "error" : "")));
  $("actions").replaceChildren(...(s.actions || []).slice().reverse().map((a) =>
    el("li", `${new Date(a.time * 1000).toLocaleTimeString()} ${a.action}: ${a.ok ? "" : "REFUSED "}${a.detail}`,
       a.ok ? "" : "error")));
  renderTrials(s.trials || {});
  renderRecord(s.record || {});
  plot(s.joints, s.commands);
}

function renderPolicy(p) {
  const live = $("live");
  live.textContent = p.live ? `live policy: ${p.live}` : "policy: no status yet (is policy_node running?)";
  live.classList.toggle("warn", !!p.live && (p.live.includes("untrained") || p.live.includes("unknown")));
  const f = (x, d = 1) => (typeof x === "number" ? x.toFixed(d) : "–");
  fill($("policy"), p.backend === undefined ? [] : [["state", `${p.state} ${p.message}`], ["backend", p.backend],
    ["checkpoint", p.checkpoint || "–"], ["rate", `${f(p.rate_hz)} Hz`], ["last inference", `${f(p.last_latency_ms)} ms`],
    ["chunks", p.chunks], ["status age", `${f(p.age_s)} s`]]);
  fill($("policy-cams"), [["camera (policy)", "rate Hz", "age ms", "drops", "frames"],
    ...(p.cameras || []).map((c) => [c.name, f(c.rate_hz), f(c.age_ms, 0), c.drops, c.frames])]);
}

function renderCameras(cams) {
  let total = 0;
  for (const c of cams) {
    total += c.received_bytes_per_s;
    if (!state.cams.has(c.name)) {
      state.cams.add(c.name);
      const box = el("div", null, "cam");
      const img = el("img");
      img.id = `cam-${c.name}`;
      img.alt = c.name;
      box.append(img, el("div", c.name));
      $("cams").appendChild(box);
      pollCamera(c.name, img);
    }
  }
  $("bandwidth").textContent = "console image bandwidth: " + cams.map((c) =>
    `${c.name} ${c.rate_hz.toFixed(1)} Hz ${(c.received_bytes_per_s / 1e6).toFixed(2)} MB/s in`).join(", ") +
    ` (total ${(total / 1e6).toFixed(2)} MB/s received; JPEG to this page at ${state.last.config.refresh_hz} Hz)`;
}

async function pollCamera(name, img) {
  for (;;) {
    const period = 1000 / ((state.last && state.last.config.refresh_hz) || 5);
    const t0 = performance.now();
    try {
      const r = await fetch(`/api/camera/${name}.jpg`, { headers: { "X-Console-Token": TOKEN } });
      if (r.status === 200) {
        const url = URL.createObjectURL(await r.blob());
        const old = img.src;
        img.src = url;
        if (old.startsWith("blob:")) URL.revokeObjectURL(old);
      }
    } catch (e) { /* the stream shows the link state */ }
    await new Promise((res) => setTimeout(res, Math.max(0, period - (performance.now() - t0))));
  }
}

function renderTrials(t) {
  if (t.error && !t.grid) { $("trials-error").textContent = t.error; return; }
  $("trials-out").textContent = `${t.mode} → ${t.out}`;
  if (document.activeElement !== $("label")) $("label").value = t.label || "";
  const n = t.next;
  $("trials-next").textContent = t.running ? `running: ${t.running.task} / ${t.running.object} trial ${t.running.trial + 1}` +
    (t.running.init_state >= 0 ? ` (init state ${t.running.init_state})` : "") :
    (n ? `next: ${n.task} / ${n.object} trial ${n.trial + 1}` + (n.init_state >= 0 ? ` from init state ${n.init_state}` :
      " (set the scene up, then press Next trial)") : "every trial is done");
  const noted = t.running || t.last;
  $("note-on").textContent = noted ? `note on ${noted.task} / ${noted.object} trial ${noted.trial + 1}` : "note";
  $("trial-mark").classList.toggle("hidden", !t.prompt);
  $("trials-error").textContent = t.error || "";
  $("trials-lines").textContent = (t.lines || []).join("\n");
  $("progress").replaceChildren(...(t.grid || []).map((g) => {
    const box = el("div");
    const ok = g.cells.filter((c) => c === true).length;
    const done = g.cells.filter((c) => c !== null).length;
    box.appendChild(el("div", `${g.task} / ${g.object}: ${done}/${g.cells.length} done, ${ok} successes`, "small"));
    const cells = el("div", null, "cells");
    g.cells.forEach((c) => cells.appendChild(el("span", null, `cell ${c === true ? "ok" : c === false ? "no" : ""}`)));
    box.appendChild(cells);
    return box;
  }));
  fill($("results"), [["label", "task", "object", "successes", "trials", "rate %", "95 % CI"],
    ...(t.results || []).map((r) => [r.label, r.task, r.object, r.successes, r.trials,
      (100 * r.success_rate).toFixed(1), `${(100 * r.ci_low).toFixed(1)}–${(100 * r.ci_high).toFixed(1)}`])]);
}

function renderRecord(r) {
  if (!r.counts) return;
  const sel = $("rec-source");
  if (!sel.options.length) (r.sources || []).forEach((s) => sel.appendChild(new Option(s, s)));
  const tasks = [...new Set(r.counts.map((c) => c.task))];
  if (!$("rec-task").options.length) {
    tasks.forEach((t) => $("rec-task").appendChild(new Option(t, t)));
    $("rec-task").addEventListener("change", () => fillObjects(r.counts));
    fillObjects(r.counts);
  }
  $("rec-prompt").textContent = r.running ? `take ${r.running.take} of ${r.running.task} / ${r.running.object}: ${r.prompt || "starting…"}` : "";
  $("rec-last").textContent = r.last || "";
  fill($("rec-counts"), [["task", "object", "kept", "task kept / target"],
    ...r.counts.map((c) => [c.task, c.object, c.kept, `${c.task_kept} / ${c.target}`])]);
}

function fillObjects(counts) {
  $("rec-object").replaceChildren(...counts.filter((c) => c.task === $("rec-task").value)
    .map((c) => new Option(c.object, c.object)));
}

const COLORS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#808000", "#000075"];
function plot(meas, cmd) {
  const c = $("plot"), g = c.getContext("2d");
  g.clearRect(0, 0, c.width, c.height);
  const all = [meas, cmd].filter((s) => s && s.t.length).flatMap((s) => s.values.flat()).filter((v) => v !== null);
  if (!all.length) { g.fillText("no joint data yet", 10, 20); return; }
  const lo = Math.min(...all), hi = Math.max(...all), span = hi - lo || 1;
  const x = (t) => c.width * (1 + t / 10), y = (v) => c.height - 8 - (c.height - 16) * (v - lo) / span;
  [[meas, []], [cmd, [5, 4]]].forEach(([s, dash]) => {
    if (!s || !s.t.length) return;
    g.setLineDash(dash);
    s.values.forEach((vals, j) => {
      g.strokeStyle = COLORS[j % COLORS.length];
      g.beginPath();
      vals.forEach((v, i) => { if (v !== null) (i ? g.lineTo : g.moveTo).call(g, x(s.t[i]), y(v)); });
      g.stroke();
    });
  });
  g.setLineDash([]);
  g.fillStyle = "#333";
  g.fillText(`${hi.toFixed(2)} rad`, 4, 12);
  g.fillText(`${lo.toFixed(2)} rad`, 4, c.height - 2);
}

// ---------------------------------------------------------------- the state stream
function connect() {
  const es = new EventSource(`/api/events?token=${encodeURIComponent(TOKEN)}`);
  es.onopen = () => { $("link").textContent = "connected"; $("link").classList.remove("bad"); };
  es.onmessage = (m) => { try { render(JSON.parse(m.data)); } catch (e) { alertLine(`render: ${e}`); } };
  es.onerror = () => { $("link").textContent = "console unreachable: retrying"; $("link").classList.add("bad"); };
}
connect();
complete();
